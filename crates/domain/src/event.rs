//! How events become rows and rows become events again, including schema upcasting.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A domain event enum. Implementors derive serde with `#[serde(tag = "type", content = "data")]`
/// so the variant name is the stored `event_type` and the fields are the stored `data`.
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The stored name of this event; an exhaustive match, so a new variant needs a name.
    fn event_type(&self) -> &'static str;

    /// The schema version new events of this type are written with.
    fn schema_version(event_type: &str) -> u32 {
        let _ = event_type;
        1
    }

    /// Rewrites the data of an older schema version into the current one.
    fn upcast(event_type: &str, schema_version: u32, data: Value) -> Result<Value, DecodeError> {
        if schema_version == Self::schema_version(event_type) {
            Ok(data)
        } else {
            Err(DecodeError::UnknownSchemaVersion {
                event_type: event_type.to_owned(),
                schema_version,
            })
        }
    }
}

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: u32,
    pub data: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event {event_type} has unknown schema version {schema_version}")]
    UnknownSchemaVersion { event_type: String, schema_version: u32 },
    #[error("event {event_type} does not match its schema: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
}

pub fn encode<E: Event>(event: &E) -> EncodedEvent {
    let event_type = event.event_type();
    let mut value = serde_json::to_value(event).expect("domain events always serialize");
    let data = value
        .get_mut("data")
        .map(Value::take)
        .unwrap_or_else(|| Value::Object(Default::default()));
    debug_assert_eq!(value.get("type").and_then(Value::as_str), Some(event_type));
    EncodedEvent {
        event_type,
        schema_version: E::schema_version(event_type),
        data,
    }
}

/// Decodes a stored event, upcasting older schema versions first.
pub fn decode<E: Event>(event_type: &str, schema_version: u32, data: Value) -> Result<E, DecodeError> {
    let data = E::upcast(event_type, schema_version, data)?;
    serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).map_err(|source| {
        DecodeError::Malformed {
            event_type: event_type.to_owned(),
            source,
        }
    })
}
