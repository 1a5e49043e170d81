//! Relay-style connections over keyset queries: page sizes, opaque cursors, and the page
//! built from a query fetched one row beyond the page.

use crate::errors::bad_request;
use async_graphql::connection::{Connection, Edge};
use async_graphql::Result;
use base64::Engine;
use serde::{Deserialize, Serialize};

const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;

/// The page size `first` asks for, within 1 to [`MAX_PAGE`].
pub fn page_size(first: Option<i32>) -> Result<i64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as i32).contains(&n) => Ok(n as i64),
        Some(_) => Err(bad_request(format!("first must be 1 to {MAX_PAGE}"))),
    }
}

pub fn encode_cursor<T: Serialize>(value: &T) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// The keyset position an `after` cursor holds; BAD_REQUEST for one this API did not give out.
pub fn decode_cursor<T: for<'de> Deserialize<'de>>(cursor: &str) -> Result<T> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad_request("after is not a cursor this API gave out"))
}

/// A page of a keyset query fetched with `LIMIT limit + 1`: the extra row only says whether
/// there is a next page.
pub fn page<T: async_graphql::OutputType>(
    rows: Vec<T>,
    limit: i64,
    had_cursor: bool,
    cursor: impl Fn(&T) -> String,
) -> Connection<String, T> {
    let has_next = rows.len() as i64 > limit;
    let mut connection = Connection::new(had_cursor, has_next);
    connection.edges.extend(
        rows.into_iter()
            .take(limit as usize)
            .map(|node| Edge::new(cursor(&node), node)),
    );
    connection
}
