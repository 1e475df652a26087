//! The Standard Webhooks signature (<https://www.standardwebhooks.com/>): every POST carries
//! `webhook-id` (the delivery id, the same on every retry), `webhook-timestamp` (Unix seconds of
//! this attempt) and `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//! A receiver recomputes it over the raw body, compares in constant time and refuses old
//! timestamps (replays). The key is the secret's bytes; a secret written `whsec_<base64>` (the
//! spec's format) is the decoded bytes, so the spec's libraries verify it unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shortest secret accepted (characters, or decoded bytes of a `whsec_` secret).
pub const MIN_SECRET: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--webhook-secret must be at least {MIN_SECRET} characters")]
    TooShort,
    #[error("--webhook-secret starts with whsec_ but the rest is not base64")]
    NotBase64,
}

/// The signing key. `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl Secret {
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let key = match s.strip_prefix("whsec_") {
            Some(b64) => STANDARD
                .decode(b64.trim())
                .map_err(|_| SecretError::NotBase64)?,
            None => s.as_bytes().to_vec(),
        };
        if key.len() < MIN_SECRET {
            return Err(SecretError::TooShort);
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value for this delivery id, timestamp and body.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length: new_from_slice cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether any `v1,` signature of a (space-separated) header value matches, in constant
    /// time: what a receiver does (the tests use it as one).
    pub fn verify(&self, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        let want = self.mac(id, timestamp, body);
        header.split(' ').any(|sig| {
            sig.strip_prefix("v1,")
                .and_then(|b| STANDARD.decode(b).ok())
                .is_some_and(|got| {
                    got.len() == want.len()
                        && got.iter().zip(&want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks spec's reference libraries.
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let s = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let sig = s.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(s.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            &format!("v1,bm9wZQ== {sig}")
        ));
        assert!(!s.verify("msg_other", 1_614_265_330, b"{}", &sig));
    }

    #[test]
    fn short_or_bad_secrets_are_refused() {
        assert!(matches!(Secret::parse("short"), Err(SecretError::TooShort)));
        assert!(matches!(
            Secret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        ));
        assert!(Secret::parse("a-long-enough-plain-secret").is_ok());
        assert_eq!(
            format!(
                "{:?}",
                Secret::parse("a-long-enough-plain-secret").expect("ok")
            ),
            "Secret(****)"
        );
    }
}
