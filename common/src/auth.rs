//! JWT authentication for the Engine API.
//!
//! The execution client and the consensus layer share a 32-byte secret. Every request
//! carries `Authorization: Bearer <token>`, an HS256 JWT whose `iat` claim must be within
//! ±60 s of the execution client's clock. A token is cheap to make, so we sign a fresh one
//! per request instead of caching one and racing its expiry.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How far `iat` may be from the verifier's clock, in seconds (Engine API authentication spec).
pub const IAT_WINDOW_SECS: u64 = 60;

/// Why a JWT secret file could not be used. Each case gets its own message because the fix
/// differs: create the file, fix its contents, or point at another file.
#[derive(Debug, thiserror::Error)]
pub enum JwtSecretError {
    /// The file does not exist or cannot be read.
    #[error(
        "cannot read JWT secret file {path}: {source} (create one with `openssl rand -hex 32 > {path}` or run scripts/devnet.sh start)"
    )]
    Unreadable {
        /// The file we tried to read.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The contents are not hexadecimal.
    #[error("JWT secret file {path} is not hex: {reason}")]
    NotHex {
        /// The file we read.
        path: PathBuf,
        /// What the hex decoder said.
        reason: String,
    },
    /// The contents decode, but not to 32 bytes.
    #[error("JWT secret file {path} holds {len} bytes; the Engine API needs exactly 32 (64 hex characters)")]
    WrongLength {
        /// The file we read.
        path: PathBuf,
        /// How many bytes the hex decoded to.
        len: usize,
    },
}

/// Why a token was refused by [`JwtSecret::validate`].
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Bad signature, wrong algorithm, or not a JWT at all.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The signature is fine but `iat` is too far from now.
    #[error("stale token: iat {iat} is more than {IAT_WINDOW_SECS}s from now ({now})")]
    Stale {
        /// The token's issued-at time.
        iat: u64,
        /// The verifier's clock.
        now: u64,
    },
}

/// The claims we sign. `iat` is the only one the Engine API requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issued-at, seconds since the Unix epoch.
    pub iat: u64,
}

/// The shared 32-byte secret. `Debug` prints nothing of it, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret([u8; 32]);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

impl JwtSecret {
    /// Wraps raw secret bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads a secret file: 64 hex characters, `0x` prefix optional, surrounding whitespace
    /// (such as the trailing newline `openssl rand -hex 32` writes) ignored.
    pub fn from_file(path: &Path) -> Result<Self, JwtSecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| JwtSecretError::Unreadable { path: path.to_owned(), source })?;
        Self::from_hex(&text).map_err(|err| match err {
            HexError::NotHex(reason) => JwtSecretError::NotHex { path: path.to_owned(), reason },
            HexError::WrongLength(len) => JwtSecretError::WrongLength { path: path.to_owned(), len },
        })
    }

    fn from_hex(text: &str) -> Result<Self, HexError> {
        let text = text.trim();
        let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
        let bytes = alloy_primitives::hex::decode(digits).map_err(|e| HexError::NotHex(e.to_string()))?;
        let len = bytes.len();
        let array: [u8; 32] = bytes.try_into().map_err(|_| HexError::WrongLength(len))?;
        Ok(Self(array))
    }

    /// The secret as hex without prefix, the format Geth reads.
    pub fn to_hex(&self) -> String {
        alloy_primitives::hex::encode(self.0)
    }

    /// Signs a token issued now.
    pub fn token(&self) -> String {
        self.token_at(crate::unix_time().as_secs())
    }

    /// Signs a token with the given `iat`; tests use it to make stale tokens.
    pub fn token_at(&self, iat: u64) -> String {
        let key = EncodingKey::from_secret(&self.0);
        // HS256 over a fixed, serialisable claim set with a valid key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Claims { iat }, &key)
            .expect("HS256 signing of a plain claim set does not fail")
    }

    /// Checks a token the way an execution client does: HS256 signature with this secret,
    /// and `iat` within [`IAT_WINDOW_SECS`] of `now`. Used by the mock execution client.
    pub fn validate(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims::<&str>(&[]);
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.0), &validation)?;
        let iat = data.claims.iat;
        if iat.abs_diff(now) > IAT_WINDOW_SECS {
            return Err(JwtError::Stale { iat, now });
        }
        Ok(data.claims)
    }
}

enum HexError {
    NotHex(String),
    WrongLength(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn write(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), contents).expect("write secret");
        file
    }

    #[test]
    fn reads_plain_prefixed_and_newline_terminated_secrets() {
        for text in [HEX.to_string(), format!("0x{HEX}"), format!("{HEX}\n"), format!("  0x{HEX}\r\n")] {
            let secret = JwtSecret::from_file(write(&text).path()).expect("valid secret");
            assert_eq!(secret.to_hex(), HEX, "from {text:?}");
        }
    }

    #[test]
    fn missing_file_says_how_to_make_one() {
        let err = JwtSecret::from_file(Path::new("/nonexistent/jwt.hex")).unwrap_err();
        assert!(matches!(err, JwtSecretError::Unreadable { .. }));
        assert!(err.to_string().contains("openssl rand -hex 32"), "{err}");
    }

    #[test]
    fn non_hex_is_named_as_such() {
        let err = JwtSecret::from_file(write(&"zz".repeat(32)).path()).unwrap_err();
        assert!(matches!(err, JwtSecretError::NotHex { .. }), "{err}");
    }

    #[test]
    fn wrong_length_reports_the_length() {
        let err = JwtSecret::from_file(write(&HEX[..62]).path()).unwrap_err();
        assert!(matches!(err, JwtSecretError::WrongLength { len: 31, .. }), "{err}");
        let err = JwtSecret::from_file(write("").path()).unwrap_err();
        assert!(matches!(err, JwtSecretError::WrongLength { len: 0, .. }), "{err}");
    }

    #[test]
    fn token_round_trips() {
        let secret = JwtSecret::from_hex(HEX).ok().expect("valid hex");
        let now = crate::unix_time().as_secs();
        let claims = secret.validate(&secret.token(), now).expect("fresh token validates");
        assert!(claims.iat.abs_diff(now) <= 1);
    }

    #[test]
    fn iat_window_is_sixty_seconds_either_way() {
        let secret = JwtSecret::new([7; 32]);
        let now = 1_700_000_000;
        for iat in [now - 60, now, now + 60] {
            assert!(secret.validate(&secret.token_at(iat), now).is_ok(), "iat {iat}");
        }
        for iat in [now - 61, now + 61] {
            let err = secret.validate(&secret.token_at(iat), now).unwrap_err();
            assert!(matches!(err, JwtError::Stale { .. }), "iat {iat}: {err}");
        }
    }

    #[test]
    fn other_secret_is_refused() {
        let token = JwtSecret::new([1; 32]).token();
        let err = JwtSecret::new([2; 32]).validate(&token, crate::unix_time().as_secs()).unwrap_err();
        assert!(matches!(err, JwtError::Invalid(_)), "{err}");
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", JwtSecret::new([0xab; 32])), "JwtSecret(..)");
    }
}
