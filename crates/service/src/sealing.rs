//! Sealing of the secrets the services keep for workspaces (provider API keys): an
//! authenticated cipher, XChaCha20-Poly1305, under a key-encryption key (KEK) from the
//! environment. `PROVIDER_KEYS_KEK` seals every new secret; `PROVIDER_KEYS_KEK_OLD`, during a
//! rotation, still opens the secrets sealed before it. Each sealed secret names its KEK by
//! id (the first 8 bytes of the KEK's SHA-256, hex), and is bound to where it belongs by the
//! associated data, so a ciphertext copied to another workspace or provider does not open.

use crate::settings::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::workspace::SealedSecret;
use sha2::{Digest, Sha256};

/// A development KEK, so that a stack started without configuration works; `deploy/local/up`
/// and every real deployment set `PROVIDER_KEYS_KEK` instead.
const DEV_KEK: &str = "ZGV2LW9ubHkta2VrLWNoYW5nZS1tZS0zMi1ieXRlcyE=";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0} must be 32 bytes, base64 encoded")]
    BadKek(&'static str),
    #[error("the secret was sealed under a key-encryption key this process does not have ({0})")]
    UnknownKek(String),
    #[error("the sealed secret does not open: it was altered, or belongs elsewhere")]
    DoesNotOpen,
}

struct Kek {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Kek {
    fn parse(name: &'static str, base64: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(base64.trim()).map_err(|_| SealError::BadKek(name))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKek(name));
        }
        Ok(Self {
            id: hex::encode(&Sha256::digest(&bytes)[..8]),
            cipher: XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::BadKek(name))?,
        })
    }
}

/// The process's KEKs: the current one seals and opens, the old one only opens.
pub struct Sealer {
    current: Kek,
    old: Option<Kek>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field("old", &self.old.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Sealer {
    pub fn new(current: &Secret, old: Option<&Secret>) -> Result<Self, SealError> {
        Ok(Self {
            current: Kek::parse("PROVIDER_KEYS_KEK", current.expose())?,
            old: old
                .map(|old| Kek::parse("PROVIDER_KEYS_KEK_OLD", old.expose()))
                .transpose()?,
        })
    }

    /// From `PROVIDER_KEYS_KEK` (a development key when unset or empty, as compose passes an
    /// unset variable) and `PROVIDER_KEYS_KEK_OLD`.
    pub fn from_env() -> Result<Self, SealError> {
        let set = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new)
        };
        let current = set("PROVIDER_KEYS_KEK").unwrap_or_else(|| Secret::new(DEV_KEK));
        Self::new(&current, set("PROVIDER_KEYS_KEK_OLD").as_ref())
    }

    /// Seals `plaintext` under the current KEK, bound to `context` (e.g. workspace and provider).
    pub fn seal(&self, plaintext: &str, context: &str) -> SealedSecret {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
        SealedSecret {
            kek_id: self.current.id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        }
    }

    /// Opens a sealed secret with whichever KEK sealed it.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<Secret, SealError> {
        let kek = [Some(&self.current), self.old.as_ref()]
            .into_iter()
            .flatten()
            .find(|kek| kek.id == sealed.kek_id)
            .ok_or_else(|| SealError::UnknownKek(sealed.kek_id.clone()))?;
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| SealError::DoesNotOpen)?;
        if nonce.len() != 24 {
            return Err(SealError::DoesNotOpen);
        }
        let ciphertext = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::DoesNotOpen)?;
        let payload = Payload {
            msg: &ciphertext,
            aad: context.as_bytes(),
        };
        let plaintext = kek
            .cipher
            .decrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

/// The associated data binding a provider key to its workspace and provider.
pub fn provider_key_context(workspace_id: uuid::Uuid, provider: domain::workspace::ProviderKind) -> String {
    format!("promptcards/provider-key/{workspace_id}/{}", provider.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Secret {
        Secret::new(STANDARD.encode([byte; 32]))
    }

    #[test]
    fn sealed_secrets_open_only_in_their_context_and_under_a_known_kek() {
        let sealer = Sealer::new(&kek(1), None).unwrap();
        let sealed = sealer.seal("sk-secret", "ws-a/openai");
        assert!(!sealed.ciphertext.contains("sk-secret"));
        assert_ne!(sealer.seal("sk-secret", "ws-a/openai").nonce, sealed.nonce);
        assert_eq!(sealer.open(&sealed, "ws-a/openai").unwrap().expose(), "sk-secret");
        assert!(matches!(
            sealer.open(&sealed, "ws-b/openai"),
            Err(SealError::DoesNotOpen)
        ));
        let mut altered = sealed.clone();
        altered.ciphertext = STANDARD.encode(b"something else entirely");
        assert!(matches!(
            sealer.open(&altered, "ws-a/openai"),
            Err(SealError::DoesNotOpen)
        ));

        // Rotation: the new KEK seals, the old one still opens what it sealed.
        let rotated = Sealer::new(&kek(2), Some(&kek(1))).unwrap();
        assert_eq!(rotated.open(&sealed, "ws-a/openai").unwrap().expose(), "sk-secret");
        let resealed = rotated.seal("sk-secret", "ws-a/openai");
        assert_ne!(resealed.kek_id, sealed.kek_id);
        let retired = Sealer::new(&kek(2), None).unwrap();
        assert!(matches!(
            retired.open(&sealed, "ws-a/openai"),
            Err(SealError::UnknownKek(_))
        ));
        assert_eq!(retired.open(&resealed, "ws-a/openai").unwrap().expose(), "sk-secret");
        assert!(matches!(
            Sealer::new(&Secret::new("c2hvcnQ="), None),
            Err(SealError::BadKek(_))
        ));
        assert!(!format!("{rotated:?}").contains(&STANDARD.encode([2u8; 32])));
    }

    #[test]
    fn the_development_kek_is_32_bytes() {
        assert!(Sealer::new(&Secret::new(DEV_KEK), None).is_ok());
    }
}
