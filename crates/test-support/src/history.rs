//! Appending histories the way the command API does: someone acting in a workspace, with the
//! metadata every append of theirs carries.

use domain::names::stream_types;
use domain::role::Role;
use domain::template::{VarType, Variable};
use domain::workspace::WorkspaceEvent;
use event_store::{Append, Appended, EventStore, ExpectedVersion, Metadata, NewEvent, StreamAppend};
use uuid::Uuid;

pub fn stream(stream_id: Uuid, stream_type: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id,
        stream_type: stream_type.to_owned(),
        expected,
        events,
    }
}

/// A required string variable without a default: what a `{{ name }}` placeholder declares.
pub fn string_variable(name: &str) -> Variable {
    Variable {
        name: name.to_owned(),
        kind: VarType::String,
        description: None,
        default: None,
        required: true,
    }
}

/// A W3C traceparent, different every call.
pub fn traceparent() -> String {
    format!(
        "00-{}-{}-01",
        Uuid::new_v4().simple(),
        &Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Someone acting in a workspace of their own.
#[derive(Debug, Clone)]
pub struct Actor {
    pub workspace_id: Uuid,
    pub actor_id: Uuid,
}

impl Default for Actor {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor {
    pub fn new() -> Self {
        Self {
            workspace_id: Uuid::now_v7(),
            actor_id: Uuid::now_v7(),
        }
    }

    /// The metadata every append of this actor carries; a fresh traceparent when `traced`.
    pub fn metadata(&self, traced: bool) -> Metadata {
        Metadata {
            actor_id: Some(self.actor_id),
            workspace_id: Some(self.workspace_id),
            correlation_id: Uuid::now_v7(),
            traceparent: traced.then(traceparent),
            ..Metadata::default()
        }
    }

    pub async fn append(&self, store: &EventStore, traced: bool, streams: Vec<StreamAppend>) -> Appended {
        store
            .append(Append {
                streams,
                metadata: self.metadata(traced),
                ..Append::default()
            })
            .await
            .expect("append")
    }

    /// Creates this actor's workspace, owned by the actor, with a new member per role of
    /// `members`, in one traced append: `1 + members.len()` events.
    pub async fn create_workspace(&self, store: &EventStore, members: &[Role]) {
        let mut events = vec![NewEvent::from_domain(&WorkspaceEvent::WorkspaceCreated {
            workspace_id: self.workspace_id,
            name: format!("workspace {}", self.workspace_id.simple()),
            owner_id: self.actor_id,
        })];
        events.extend(members.iter().map(|role| {
            NewEvent::from_domain(&WorkspaceEvent::MemberAdded {
                user_id: Uuid::now_v7(),
                role: *role,
            })
        }));
        let workspace = stream(
            self.workspace_id,
            stream_types::WORKSPACE,
            ExpectedVersion::NoStream,
            events,
        );
        self.append(store, true, vec![workspace]).await;
    }
}
