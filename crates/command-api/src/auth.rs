//! Who is calling: passwords (argon2), JWT access and refresh tokens, and API keys.

use crate::error::ApiError;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use domain::workspace::Workspace;
use domain::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// A caller whose credentials checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    User(Uuid),
    /// A workspace API key; it acts only in its own workspace, with its own role.
    ApiKey { key_id: Uuid, workspace_id: Uuid },
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    typ: TokenType,
    iat: i64,
    exp: i64,
    jti: Uuid,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Issues and checks signed tokens (HS256).
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid) -> Result<Tokens, ApiError> {
        Ok(Tokens {
            access_token: self.sign(user_id, TokenType::Access, self.access_ttl)?,
            refresh_token: self.sign(user_id, TokenType::Refresh, self.refresh_ttl)?,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    fn sign(&self, user_id: Uuid, typ: TokenType, ttl: Duration) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            typ,
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    pub fn verify_access(&self, token: &str) -> Result<Uuid, ApiError> {
        self.verify(token, TokenType::Access)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<Uuid, ApiError> {
        self.verify(token, TokenType::Refresh)
    }

    fn verify(&self, token: &str, expected: TokenType) -> Result<Uuid, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the token has expired".into())
                }
                _ => ApiError::Unauthorized("the token is invalid".into()),
            })?
            .claims;
        if claims.typ != expected {
            return Err(ApiError::Unauthorized(match expected {
                TokenType::Access => "a refresh token cannot authorize requests".into(),
                TokenType::Refresh => "expected a refresh token".into(),
            }));
        }
        Ok(claims.sub)
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
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Ryh3/yr9ZwyYx4U+ljuNErCMc3nH36JxMRskGXcoyw";

pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored hash is malformed: {e}")))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
}

const API_KEY_PREFIX: &str = "pc_";

/// A freshly made API key: the full key is shown to the user once; only the hash is kept.
pub struct NewApiKey {
    pub key_id: Uuid,
    pub key: String,
    pub secret_hash: String,
}

pub fn generate_api_key() -> NewApiKey {
    let key_id = Uuid::new_v4();
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewApiKey {
        key_id,
        key: format!("{API_KEY_PREFIX}{}_{secret}", key_id.simple()),
        secret_hash: hash_secret(&secret),
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits `pc_<key id>_<secret>`; `None` when the bearer token is not an API key at all.
pub fn parse_api_key(token: &str) -> Option<Result<(Uuid, &str), ApiError>> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let parsed = rest
        .split_once('_')
        .and_then(|(id, secret)| Some((Uuid::try_parse(id).ok()?, secret)))
        .ok_or_else(|| ApiError::Unauthorized("the API key is malformed".into()));
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_parse_back_to_their_id_and_hash_to_the_stored_hash() {
        let key = generate_api_key();
        let (id, secret) = parse_api_key(&key.key).unwrap().unwrap();
        assert_eq!(id, key.key_id);
        assert_eq!(hash_secret(secret), key.secret_hash);
        assert!(parse_api_key("eyJhbGciOi").is_none());
        assert!(parse_api_key("pc_nonsense").unwrap().is_err());
    }

    #[test]
    fn tokens_are_checked_for_type_signature_and_expiry() {
        let keys = TokenKeys::new("s3cret", Duration::from_secs(60), Duration::from_secs(120));
        let user = Uuid::new_v4();
        let tokens = keys.issue(user).unwrap();
        assert_eq!(keys.verify_access(&tokens.access_token).unwrap(), user);
        assert_eq!(keys.verify_refresh(&tokens.refresh_token).unwrap(), user);
        assert!(keys.verify_access(&tokens.refresh_token).is_err());
        let other = TokenKeys::new("other", Duration::from_secs(60), Duration::from_secs(60));
        assert!(other.verify_access(&tokens.access_token).is_err());
        let now = chrono::Utc::now().timestamp();
        let expired = Claims {
            sub: user,
            typ: TokenType::Access,
            iat: now - 120,
            exp: now - 60,
            jti: Uuid::new_v4(),
        };
        let expired = jsonwebtoken::encode(&Header::default(), &expired, &keys.encoding).unwrap();
        assert!(keys.verify_access(&expired).is_err());
    }
}
