//! Signing secrets at rest. The deliverer must sign with an endpoint's secret, so it is kept,
//! but never in the clear: the command API seals it with AES-256-GCM under a key-encryption key
//! (`WEBHOOK_SECRETS_KEK`) before it goes into the `WebhookCreated` event, and only the deliverer
//! opens it. The event store, Kafka, ClickHouse and the audit log carry the sealed form alone.
//! The endpoint's id is the associated data, so a sealed secret copied onto another endpoint
//! does not open. `WEBHOOK_SECRETS_KEK_OLD` still opens what the previous key sealed, so the key
//! can be rotated without re-registering endpoints.

use crate::signing::SigningSecret;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("{0} must be the base64 of 32 bytes")]
    BadKey(&'static str),
    #[error("the sealed secret is malformed")]
    Malformed,
    #[error("the secret was sealed with key {0}, which is neither WEBHOOK_SECRETS_KEK nor WEBHOOK_SECRETS_KEK_OLD")]
    UnknownKey(String),
    #[error("the sealed secret does not open with its key (altered, or sealed for another endpoint)")]
    Altered,
}

struct Kek {
    /// The first 4 bytes of the key's SHA-256, in hex: says which key sealed a secret.
    id: String,
    cipher: Aes256Gcm,
}

impl Kek {
    fn new(bytes: &[u8], setting: &'static str) -> Result<Self, SealError> {
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| SealError::BadKey(setting))?;
        let id = Sha256::digest(bytes)[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, cipher })
    }

    fn from_base64(text: &str, setting: &'static str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey(setting))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(setting));
        }
        Self::new(&bytes, setting)
    }
}

/// The key that seals, and the previous one, which still opens.
pub struct Keyring {
    current: Kek,
    old: Option<Kek>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("old", &self.old.as_ref().map(|k| &k.id))
            .finish()
    }
}

fn associated_data(webhook_id: Uuid) -> Vec<u8> {
    format!("promptcards webhook secret {webhook_id}").into_bytes()
}

impl Keyring {
    /// From base64 keys of 32 bytes each.
    pub fn new(current: &str, old: Option<&str>) -> Result<Self, SealError> {
        Ok(Self {
            current: Kek::from_base64(current, "WEBHOOK_SECRETS_KEK")?,
            old: old
                .filter(|o| !o.trim().is_empty())
                .map(|o| Kek::from_base64(o, "WEBHOOK_SECRETS_KEK_OLD"))
                .transpose()?,
        })
    }

    /// `WEBHOOK_SECRETS_KEK` (a development key by default) and `WEBHOOK_SECRETS_KEK_OLD`.
    pub fn from_env() -> Result<Self, SealError> {
        let current = service::env_or("WEBHOOK_SECRETS_KEK", "ZGV2LW9ubHktd2ViaG9vay1zZWNyZXRzLWtlay0zMmI=");
        let old = std::env::var("WEBHOOK_SECRETS_KEK_OLD").ok();
        Self::new(&current, old.as_deref())
    }

    /// `v1.<key id>.<nonce>.<ciphertext>`, for the endpoint `webhook_id` only.
    pub fn seal(&self, secret: &SigningSecret, webhook_id: Uuid) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let plaintext = secret.expose();
        let aad = associated_data(webhook_id);
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts any message of this size");
        format!(
            "{VERSION}.{}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// The secret `seal` sealed for `webhook_id`, with whichever key sealed it.
    pub fn open(&self, sealed: &str, webhook_id: Uuid) -> Result<SigningSecret, SealError> {
        let parts: Vec<&str> = sealed.split('.').collect();
        let [VERSION, key_id, nonce, ciphertext] = parts[..] else {
            return Err(SealError::Malformed);
        };
        let kek = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| SealError::Malformed)?;
        let ciphertext = URL_SAFE_NO_PAD.decode(ciphertext).map_err(|_| SealError::Malformed)?;
        if nonce.len() != 12 {
            return Err(SealError::Malformed);
        }
        let aad = associated_data(webhook_id);
        let plaintext = kek
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Altered)?;
        let text = String::from_utf8(plaintext).map_err(|_| SealError::Malformed)?;
        SigningSecret::parse(&text).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ZGV2LW9ubHktd2ViaG9vay1zZWNyZXRzLWtlay0zMmI=";
    const KEY_B: &str = "YW5vdGhlci1rZXktb2YtdGhpcnR5LXR3by1ieXRlcyE=";

    #[test]
    fn a_sealed_secret_opens_for_its_endpoint_only_and_never_shows_in_the_clear() {
        let keyring = Keyring::new(KEY_A, None).unwrap();
        let secret = SigningSecret::generate();
        let endpoint = Uuid::now_v7();
        let sealed = keyring.seal(&secret, endpoint);
        assert!(!sealed.contains(secret.expose().trim_start_matches("whsec_")));
        assert_eq!(keyring.open(&sealed, endpoint).unwrap(), secret);
        assert_eq!(keyring.open(&sealed, Uuid::now_v7()), Err(SealError::Altered));
        let mut tampered = sealed.clone();
        tampered.replace_range(sealed.len() - 2.., "AA");
        assert_eq!(keyring.open(&tampered, endpoint), Err(SealError::Altered));
    }

    #[test]
    fn the_old_key_still_opens_after_a_rotation() {
        let before = Keyring::new(KEY_A, None).unwrap();
        let secret = SigningSecret::generate();
        let endpoint = Uuid::now_v7();
        let sealed = before.seal(&secret, endpoint);
        let rotated = Keyring::new(KEY_B, Some(KEY_A)).unwrap();
        assert_eq!(rotated.open(&sealed, endpoint).unwrap(), secret);
        let forgotten = Keyring::new(KEY_B, None).unwrap();
        assert!(matches!(
            forgotten.open(&sealed, endpoint),
            Err(SealError::UnknownKey(_))
        ));
        assert!(rotated
            .seal(&secret, endpoint)
            .starts_with(&format!("v1.{}.", rotated.current.id)));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(
            Keyring::new("c2hvcnQ=", None).unwrap_err(),
            SealError::BadKey("WEBHOOK_SECRETS_KEK")
        );
        assert_eq!(
            Keyring::new(KEY_A, Some("not base64!")).unwrap_err(),
            SealError::BadKey("WEBHOOK_SECRETS_KEK_OLD")
        );
    }
}
