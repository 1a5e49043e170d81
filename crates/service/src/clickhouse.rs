//! The one way every process (and test) builds a ClickHouse client.

use clickhouse::{Client, Compression};

/// A client for the old and the new servers alike: HTTP without compression, no schema
/// validation (18.16 lacks RowBinaryWithNamesAndTypes).
pub fn client(url: &str, database: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_database(database)
        .with_compression(Compression::None)
        .with_validation(false)
}
