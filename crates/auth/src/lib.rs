//! Bearer credentials shared by the command and query APIs: HS256 JWT access and refresh
//! tokens, and workspace API keys of the form `pc_<key id>_<secret>` whose secret is kept only
//! as a SHA-256 hash.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credential is missing, malformed, forged or expired; the message says which.
    #[error("{0}")]
    Unauthorized(String),
    #[error("signing a token failed: {0}")]
    Internal(String),
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

    pub fn issue(&self, user_id: Uuid) -> Result<Tokens, AuthError> {
        Ok(Tokens {
            access_token: self.sign(user_id, TokenType::Access, self.access_ttl)?,
            refresh_token: self.sign(user_id, TokenType::Refresh, self.refresh_ttl)?,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    fn sign(&self, user_id: Uuid, typ: TokenType, ttl: Duration) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            typ,
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    pub fn verify_access(&self, token: &str) -> Result<Uuid, AuthError> {
        self.verify(token, TokenType::Access)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<Uuid, AuthError> {
        self.verify(token, TokenType::Refresh)
    }

    fn verify(&self, token: &str, expected: TokenType) -> Result<Uuid, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::Unauthorized("the token has expired".into())
                }
                _ => AuthError::Unauthorized("the token is invalid".into()),
            })?
            .claims;
        if claims.typ != expected {
            return Err(AuthError::Unauthorized(match expected {
                TokenType::Access => "a refresh token cannot authorize requests".into(),
                TokenType::Refresh => "expected a refresh token".into(),
            }));
        }
        Ok(claims.sub)
    }
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
pub fn parse_api_key(token: &str) -> Option<Result<(Uuid, &str), AuthError>> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let parsed = rest
        .split_once('_')
        .and_then(|(id, secret)| Some((Uuid::try_parse(id).ok()?, secret)))
        .ok_or_else(|| AuthError::Unauthorized("the API key is malformed".into()));
    Some(parsed)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header_value: &str) -> Result<&str, AuthError> {
    header_value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError::Unauthorized("the Authorization header must be 'Bearer <token>'".into()))
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
        assert_eq!(
            keys.verify_access(&expired),
            Err(AuthError::Unauthorized("the token has expired".into()))
        );
    }

    #[test]
    fn bearer_headers_must_say_bearer() {
        assert_eq!(bearer("Bearer abc"), Ok("abc"));
        assert!(bearer("Basic abc").is_err());
        assert!(bearer("Bearer ").is_err());
    }
}
