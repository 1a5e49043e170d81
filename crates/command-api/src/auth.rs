//! Who is calling: the principal behind a bearer credential, and passwords (argon2). Tokens
//! and API keys themselves are the shared `auth` crate's.

pub use auth::{generate_api_key, hash_secret, parse_api_key, TokenKeys, Tokens};

use crate::error::ApiError;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use domain::workspace::Workspace;
use domain::Role;
use uuid::Uuid;

/// A caller whose credentials checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User(Uuid),
    /// A workspace API key; it acts only in its own workspace, with its own role.
    ApiKey {
        key_id: Uuid,
        workspace_id: Uuid,
    },
}

impl Principal {
    /// The id recorded as the actor of the events this caller causes.
    pub fn actor_id(&self) -> Uuid {
        match self {
            Principal::User(id) => *id,
            Principal::ApiKey { key_id, .. } => *key_id,
        }
    }

    /// The caller's role in a workspace, or `None` when it has no business there.
    pub fn role_in(&self, workspace_id: Uuid, workspace: &Workspace) -> Option<Role> {
        if workspace.id != Some(workspace_id) {
            return None;
        }
        match self {
            Principal::User(user_id) => workspace.role_of(*user_id),
            Principal::ApiKey {
                key_id,
                workspace_id: key_workspace,
            } => workspace
                .api_keys
                .get(key_id)
                .filter(|key| *key_workspace == workspace_id && !key.revoked)
                .map(|key| key.role),
        }
    }
}

/// Hashes a password with argon2id off the async runtime: it is deliberately slow.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}

/// A valid hash of a random password, verified when the email is unknown so that a login's
/// timing does not reveal which emails have accounts.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Ryh3/yr9ZwyYx4U+ljuNErCMc3nH36JxMRskGXcoyw";

pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored hash is malformed: {e}")))?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}
