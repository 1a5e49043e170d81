//! Bearer credentials shared by the command and query APIs: HS256 JWT access and refresh
//! tokens, and workspace API keys of the form `pc_<key id>_<secret>` whose secret is kept only
//! as a SHA-256 hash. A bearer credential resolves to a [`Principal`], the one notion of a
//! caller both services share.

pub mod keys;

pub use keys::{ApiKeys, API_KEY_SCOPE};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
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
    /// The session (refresh-token family) the token belongs to; absent on tokens issued
    /// before sessions were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<Uuid>,
    /// A refresh token's generation in its family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gen: Option<u32>,
}

/// A token's place in its session: the family and, for a refresh token, its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub session_id: Uuid,
    pub generation: u32,
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

    /// Tokens outside any session, whose refresh token no longer refreshes (tests sign
    /// access tokens with it).
    pub fn issue(&self, user_id: Uuid) -> Result<Tokens, AuthError> {
        self.issue_tokens(user_id, None)
    }

    /// Tokens of a session, the refresh token at the session's current generation.
    pub fn issue_in_session(&self, user_id: Uuid, session: SessionRef) -> Result<Tokens, AuthError> {
        self.issue_tokens(user_id, Some(session))
    }

    fn issue_tokens(&self, user_id: Uuid, session: Option<SessionRef>) -> Result<Tokens, AuthError> {
        Ok(Tokens {
            access_token: self.sign(user_id, TokenType::Access, self.access_ttl, session)?,
            refresh_token: self.sign(user_id, TokenType::Refresh, self.refresh_ttl, session)?,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    fn sign(
        &self,
        user_id: Uuid,
        typ: TokenType,
        ttl: Duration,
        session: Option<SessionRef>,
    ) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            typ,
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
            sid: session.map(|s| s.session_id),
            gen: session.filter(|_| typ == TokenType::Refresh).map(|s| s.generation),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    pub fn verify_access(&self, token: &str) -> Result<Uuid, AuthError> {
        self.verify(token, TokenType::Access).map(|claims| claims.sub)
    }

    /// The session an access token was issued in, if any.
    pub fn access_session(&self, token: &str) -> Result<Option<Uuid>, AuthError> {
        self.verify(token, TokenType::Access).map(|claims| claims.sid)
    }

    /// The user a refresh token names, and its session; `None` for a token of no session.
    pub fn verify_refresh(&self, token: &str) -> Result<(Uuid, Option<SessionRef>), AuthError> {
        let claims = self.verify(token, TokenType::Refresh)?;
        let session = claims
            .sid
            .zip(claims.gen)
            .map(|(session_id, generation)| SessionRef { session_id, generation });
        Ok((claims.sub, session))
    }

    fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, AuthError> {
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
        Ok(claims)
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
}

/// What a service keeps of a live API key to check a presented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub workspace_id: Uuid,
    pub secret_hash: String,
}

/// Resolves a bearer token to its caller: a JWT access token names a user; an API key must be
/// known to `find_key` and its secret must match. Each service looks keys up in its own
/// records (the command API in the workspace's stream, the query API in the read models), so
/// `find_key` answers `None` for a key that is unknown or revoked.
pub async fn authenticate<E, F, Fut>(tokens: &TokenKeys, token: &str, find_key: F) -> Result<Principal, E>
where
    E: From<AuthError>,
    F: FnOnce(Uuid) -> Fut,
    Fut: Future<Output = Result<Option<StoredApiKey>, E>>,
{
    let Some(api_key) = parse_api_key(token) else {
        return Ok(tokens.verify_access(token).map(Principal::User)?);
    };
    let (key_id, secret) = api_key?;
    match find_key(key_id).await? {
        Some(key) if key.secret_hash == hash_secret(secret) => Ok(Principal::ApiKey {
            key_id,
            workspace_id: key.workspace_id,
        }),
        _ => Err(AuthError::Unauthorized("the API key is not valid".into()).into()),
    }
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
        assert_eq!(keys.verify_refresh(&tokens.refresh_token).unwrap(), (user, None));
        let session = SessionRef {
            session_id: Uuid::new_v4(),
            generation: 3,
        };
        let tokens = keys.issue_in_session(user, session).unwrap();
        assert_eq!(
            keys.verify_refresh(&tokens.refresh_token).unwrap(),
            (user, Some(session))
        );
        assert_eq!(
            keys.access_session(&tokens.access_token).unwrap(),
            Some(session.session_id)
        );
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
            sid: None,
            gen: None,
        };
        let expired = jsonwebtoken::encode(&Header::default(), &expired, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify_access(&expired),
            Err(AuthError::Unauthorized("the token has expired".into()))
        );
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the lookups here are ready at once"),
        }
    }

    #[test]
    fn bearer_tokens_resolve_to_a_user_or_a_known_key_with_its_secret() {
        let keys = TokenKeys::new("s3cret", Duration::from_secs(60), Duration::from_secs(120));
        let user = Uuid::new_v4();
        let access = keys.issue(user).unwrap().access_token;
        let no_keys = |_| async { Ok::<_, AuthError>(None) };
        assert_eq!(
            block_on(authenticate(&keys, &access, no_keys)),
            Ok(Principal::User(user))
        );

        let key = generate_api_key();
        let workspace_id = Uuid::new_v4();
        let stored = StoredApiKey {
            workspace_id,
            secret_hash: key.secret_hash.clone(),
        };
        let known = |id| {
            let found = (id == key.key_id).then(|| stored.clone());
            async move { Ok::<_, AuthError>(found) }
        };
        assert_eq!(
            block_on(authenticate(&keys, &key.key, known)),
            Ok(Principal::ApiKey {
                key_id: key.key_id,
                workspace_id
            })
        );
        let not_valid = Err(AuthError::Unauthorized("the API key is not valid".into()));
        assert_eq!(block_on(authenticate(&keys, &key.key, no_keys)), not_valid);
        let forged = format!("pc_{}_forged", key.key_id.simple());
        assert_eq!(block_on(authenticate(&keys, &forged, known)), not_valid);
    }

    #[test]
    fn bearer_headers_must_say_bearer() {
        assert_eq!(bearer("Bearer abc"), Ok("abc"));
        assert!(bearer("Basic abc").is_err());
        assert!(bearer("Bearer ").is_err());
    }
}
