//! The local stack's client tokens: an ES256 signing key, the JWKS Envoy checks tokens
//! against (a local file: Envoy fetches nothing), and tokens for a tenant.
//!
//! Hand-written on ring rather than a JWT crate: signing a compact JWS is a header, a payload
//! and one ECDSA signature, and ring is already linked (rustls, rcgen); a JWT crate would add
//! its own crypto stack for the one thing done here. Verification is Envoy's (its JWT filter).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rcgen::KeyPair;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

/// The signing key (PKCS#8 PEM, owner-readable only).
pub const SIGNING_KEY: &str = "jwt-signing-key.pem";
/// The public keys Envoy accepts tokens from.
pub const JWKS: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("generating the signing key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}: not an ECDSA P-256 private key in PKCS#8 PEM (switchyard-policy render certs writes one)")]
    BadKey(PathBuf),
    #[error("signing: {0}")]
    Sign(String),
}

/// Writes a signing key and its JWKS into `dir` unless both are there; whether it wrote. The
/// key is kept across runs, so tokens stay valid until they expire.
pub fn ensure(dir: &Path) -> Result<bool, JwtError> {
    let (key_path, jwks_path) = (dir.join(SIGNING_KEY), dir.join(JWKS));
    if key_path.is_file() && jwks_path.is_file() {
        return Ok(false);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| JwtError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = KeyPair::generate()?;
    let jwks = json!({"keys": [jwk(key.public_key_raw())]});
    crate::generate::write_file(&key_path, &key.serialize_pem(), true).map_err(io(&key_path))?;
    crate::generate::write_file(&jwks_path, &format!("{jwks:#}\n"), false).map_err(io(&jwks_path))?;
    Ok(true)
}

/// The JWK of a P-256 public key given as its uncompressed point (`04 || X || Y`).
fn jwk(point: &[u8]) -> Value {
    let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": key_id(point), "x": B64.encode(x), "y": B64.encode(y)})
}

/// A stable id for a public key: the first 8 bytes of its SHA-256, in hex.
fn key_id(point: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, point);
    d.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A token signed with the key at `key_path`, carrying `claims` (the caller sets `iss`,
/// `aud`, `exp` and the tenant claim).
pub fn mint(key_path: &Path, claims: &Value) -> Result<String, JwtError> {
    let pem = std::fs::read_to_string(key_path).map_err(|source| JwtError::Io { path: key_path.to_owned(), source })?;
    let bad = || JwtError::BadKey(key_path.to_owned());
    let key = KeyPair::from_pem(&pem).map_err(|_| bad())?;
    let rng = SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng).map_err(|_| bad())?;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key_id(key.public_key_raw())});
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = signer.sign(&rng, input.as_bytes()).map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{input}.{}", B64.encode(signature.as_ref())))
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;

    #[test]
    fn a_token_verifies_with_the_jwks_written_beside_its_key_and_with_no_other() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        assert!(!ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")), "a key in place is kept");
        let claims = json!({"iss": "switchyard-local", "tenant": "team-a", "exp": 4_102_444_800_u64});
        let token = mint(&dir.path().join(SIGNING_KEY), &claims).unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| B64.decode(s).unwrap_or_else(|e| panic!("{e}"));
        let payload: Value = serde_json::from_slice(&decode(parts[1])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(payload, claims);
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap_or_else(|e| panic!("{e}"));
        let jwks: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(JWKS)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let k = &jwks["keys"][0];
        assert_eq!((&header["kid"], &header["alg"]), (&k["kid"], &k["alg"]));
        // The JWK's point verifies the signature over `header.payload`, as Envoy will.
        let point =
            [vec![4u8], decode(k["x"].as_str().unwrap_or_default()), decode(k["y"].as_str().unwrap_or_default())]
                .concat();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let verify = |point: &[u8], msg: &str| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(msg.as_bytes(), &decode(parts[2])).is_ok()
        };
        assert!(verify(&point, &signed));
        assert!(!verify(&point, &format!("{signed}x")), "a changed payload does not verify");
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        ensure(other.path()).unwrap_or_else(|e| panic!("{e}"));
        let other_key = KeyPair::from_pem(&std::fs::read_to_string(other.path().join(SIGNING_KEY)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let other_point = other_key.public_key_raw();
        assert!(!verify(other_point, &signed), "another set's key does not verify it");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(SIGNING_KEY)).unwrap_or_else(|e| panic!("{e}")).permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
