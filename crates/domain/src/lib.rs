//! The Promptcards domain: aggregates, their commands and events, and the rules that decide.
//!
//! Nothing here performs I/O. Every aggregate follows one shape: `decide(&state, command)`
//! returns the events a command produces or the rule it breaks, and `evolve(state, &event)`
//! applies an event without judging it. Services load a stream, fold it with `evolve`, call
//! `decide`, and append what comes back.

pub mod alert;
pub mod card;
pub mod comparison;
pub mod error;
pub mod event;
pub mod execution;
pub mod names;
pub mod prompt;
pub mod promptfoo;
pub mod role;
pub mod run;
pub mod session;
pub mod stats;
pub mod template;
pub mod test_case;
pub mod user;
pub mod webhook;
pub mod workspace;

pub use error::{DomainError, FieldError};
pub use event::{DecodeError, EncodedEvent, Event};
pub use role::{Permission, Role};

/// An event-sourced aggregate: a fold over its stream plus the rules for new commands.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The `stream_type` recorded with every event of this aggregate's streams.
    const STREAM_TYPE: &'static str;
    type Command;
    type Event: Event;

    /// Holds every rule: returns the events the command produces, or why it may not happen.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;

    /// Applies one event. Never fails and never judges: the event already happened.
    fn evolve(self, event: &Self::Event) -> Self;

    /// Folds a whole history, oldest first.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// Given/when/then helper for aggregate tests: folds `given`, then decides `when`.
pub fn given_when<A: Aggregate>(given: &[A::Event], when: A::Command) -> Result<Vec<A::Event>, DomainError> {
    A::fold(given).decide(when)
}
