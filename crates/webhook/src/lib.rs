//! Webhooks as the command API, the deliverer and the query API share them: Standard Webhooks
//! signatures ([`signing`]), signing secrets sealed at rest ([`sealing`]), the refusal of
//! targets inside the network ([`target`]), and the SQL of the deliverer's tables ([`outbox`]).

pub mod outbox;
pub mod sealing;
pub mod signing;
pub mod target;

pub use sealing::{Keyring, SealError};
pub use signing::SigningSecret;
pub use target::{Refused, TargetPolicy};
