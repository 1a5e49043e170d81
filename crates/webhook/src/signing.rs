//! Signatures as the Standard Webhooks specification writes them
//! (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>):
//! `webhook-signature: v1,<base64 of HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}">`,
//! keyed with the bytes the secret's base64 (after `whsec_`) encodes. Receivers can check them
//! with any of the specification's verifier libraries.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;

/// The prefix the specification gives secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// The headers of a signed delivery.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// An endpoint's signing secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a signing secret is \"whsec_\" and the base64 of 24 to 64 bytes")]
pub struct MalformedSecret;

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads `whsec_<base64>`; the prefix may be left out, as verifier libraries allow.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(encoded).map_err(|_| MalformedSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(MalformedSecret);
        }
        Ok(Self(bytes))
    }

    /// `whsec_<base64>`, the form shown to the admin once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 signature>` of one attempt.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(webhook_id, timestamp, body)))
    }

    /// Whether any `v1` signature of a space-separated `webhook-signature` value is ours, as a
    /// receiver checks it (in constant time). Timestamps are the receiver's to judge.
    pub fn verify(&self, webhook_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .any(|signature| {
                STANDARD.decode(signature).is_ok_and(|signature| {
                    self.keyed()
                        .chain_update(signed_content(webhook_id, timestamp, body))
                        .verify_slice(&signature)
                        .is_ok()
                })
            })
    }

    fn keyed(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    fn mac(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        self.keyed()
            .chain_update(signed_content(webhook_id, timestamp, body))
            .finalize()
            .into_bytes()
            .to_vec()
    }
}

fn signed_content(webhook_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{webhook_id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's own test suites.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_test_vector_signs_and_verifies() {
        let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
        let several = format!("v1,Zm9v {SPEC_SIGNATURE} v2,bar");
        assert!(secret.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes(), &several));
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY.as_bytes(), SPEC_SIGNATURE));
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP, b"{\"test\": 1}", SPEC_SIGNATURE));
    }

    #[test]
    fn generated_secrets_round_trip_and_never_print() {
        let secret = SigningSecret::generate();
        let shown = secret.expose();
        assert!(shown.starts_with("whsec_"), "{shown}");
        assert_eq!(SigningSecret::parse(&shown).unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
        assert_eq!(SigningSecret::parse("whsec_c2hvcnQ="), Err(MalformedSecret));
    }
}
