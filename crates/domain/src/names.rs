//! Names that a writer and its readers must spell the same way: stream types, the Kafka topic,
//! Postgres NOTIFY channels and Redis keys and channels. Each is written here once; the crates
//! on either side import it. (Event type names are each event enum's exhaustive `event_type()`.)

use uuid::Uuid;

/// The `stream_type` of each aggregate's streams, as stored in the `events` table.
pub mod stream_types {
    pub const USER: &str = "user";
    pub const WORKSPACE: &str = "workspace";
    pub const PROMPT_CARD: &str = "prompt_card";
    pub const TEST_CASE: &str = "test_case";
    pub const TEST_RUN: &str = "test_run";
    pub const COMPARISON: &str = "comparison";
    pub const SESSION: &str = "session";
    pub const WEBHOOK: &str = "webhook";
    pub const ALERT_RULE: &str = "alert_rule";
    pub const EXECUTION: &str = "execution";
}

/// The Kafka topic the relay publishes every event to, unless `KAFKA_TOPIC` says otherwise.
pub const DEFAULT_TOPIC: &str = "promptcards.events";

/// Postgres NOTIFY channel: the event store signals each committed append on it.
pub const EVENTS_CHANNEL: &str = "promptcards_events";

/// Postgres NOTIFY channel: the projector signals each batch applied to the read models.
pub const READ_MODELS_CHANNEL: &str = "promptcards_read_models";

/// Redis key holding the version of a stream the read-model cache reflects.
pub fn version_key(stream_id: Uuid) -> String {
    format!("promptcards:version:{stream_id}")
}

/// Redis pub/sub channel carrying one run's events (live run progress).
pub fn run_channel(run_id: Uuid) -> String {
    format!("promptcards:run:{run_id}:events")
}

/// Redis pub/sub channel carrying one comparison's events (live comparison progress).
pub fn comparison_channel(comparison_id: Uuid) -> String {
    format!("promptcards:comparison:{comparison_id}:events")
}

/// Redis stream of one playground execution's live updates (started, each chunk, the end), in
/// order: the runner appends, subscribers read from the start, so a late one misses nothing.
pub fn execution_updates_key(execution_id: Uuid) -> String {
    format!("promptcards:execution:{execution_id}:updates")
}

/// Redis pub/sub channel carrying one workspace's events (its audit log, live).
pub fn workspace_channel(workspace_id: Uuid) -> String {
    format!("promptcards:workspace:{workspace_id}:events")
}

/// Reservation scope of card names: a name belongs to one card of the workspace.
pub fn card_name_scope(workspace_id: Uuid) -> String {
    format!("card_name:{workspace_id}")
}

/// Postgres NOTIFY channel: the projector names each prompt card and workspace whose read model changed in a
/// batch, as `[[card_id, stream_version], ...]` in JSON, so that processes serving prompts from
/// memory drop what they hold of it. Sent in the batch's transaction, so a reader woken by it
/// finds the change committed.
pub const PROMPTS_CHANNEL: &str = "promptcards_prompts";
