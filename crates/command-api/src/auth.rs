//! Who is calling: the principal behind a bearer credential, its role in a workspace, and
//! passwords (argon2). Tokens, API keys and `Principal` itself are the shared `auth` crate's.

pub use auth::{generate_api_key, Principal, TokenKeys, Tokens};

use crate::error::ApiError;
use crate::AppState;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use domain::workspace::Workspace;
use domain::Role;
use uuid::Uuid;

/// The caller's role in a workspace, decided from the workspace's own stream.
pub trait RoleIn {
    /// The role, or `None` when the caller has no business there.
    fn role_in(&self, workspace_id: Uuid, workspace: &Workspace) -> Option<Role>;
}

impl RoleIn for Principal {
    fn role_in(&self, workspace_id: Uuid, workspace: &Workspace) -> Option<Role> {
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
                .filter(|key| *key_workspace == workspace_id && key.is_live(chrono::Utc::now()))
                .map(|key| key.role),
        }
    }
}

/// Resolves a bearer token; API keys are checked against the workspace's stream, so a key
/// works from the moment it is appended and never after its revocation or expiry.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    Ok(state.api_keys.authenticate(&state.tokens, token).await?)
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
