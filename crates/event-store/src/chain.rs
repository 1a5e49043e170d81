//! The per-stream hash chain: what each event's `hash` covers, and how it is recomputed.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The hash before a stream's first event.
pub const GENESIS: &str = "";

/// SHA-256 (hex) over the previous hash and the event's identity and content. The data is
/// hashed in a canonical form (object keys sorted at every level), so the JSONB round trip,
/// which reorders keys, does not change it.
pub fn event_hash(
    previous: &str,
    event_id: Uuid,
    stream_id: Uuid,
    version: i64,
    event_type: &str,
    schema_version: i32,
    data: &Value,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        previous,
        &event_id.to_string(),
        &stream_id.to_string(),
        &version.to_string(),
        event_type,
        &schema_version.to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hasher.update(canonical(data).as_bytes());
    hex::encode(hasher.finalize())
}

/// The data as hashed: JSON with object keys sorted at every level. The append computes the
/// same hash in SQL (migrations/*_append_batch.sql) from this text.
pub fn canonical(data: &Value) -> String {
    let mut out = String::new();
    write_canonical(data, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_hash_but_content_does() {
        let id = Uuid::nil();
        let a = event_hash(
            GENESIS,
            id,
            id,
            1,
            "T",
            1,
            &json!({"b": 1, "a": {"y": [1, 2], "x": "s"}}),
        );
        let b = event_hash(
            GENESIS,
            id,
            id,
            1,
            "T",
            1,
            &json!({"a": {"x": "s", "y": [1, 2]}, "b": 1}),
        );
        assert_eq!(a, b);
        let edited = event_hash(
            GENESIS,
            id,
            id,
            1,
            "T",
            1,
            &json!({"a": {"x": "t", "y": [1, 2]}, "b": 1}),
        );
        assert_ne!(a, edited);
        assert_ne!(
            a,
            event_hash(
                "prev",
                id,
                id,
                1,
                "T",
                1,
                &json!({"b": 1, "a": {"y": [1, 2], "x": "s"}})
            )
        );
    }
}
