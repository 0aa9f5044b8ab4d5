//! The local stack's certificates: a CA, a server certificate for each party Envoy calls (the
//! backend, the collector) and a client certificate for Envoy, valid for loopback. The CA's key
//! signs them and is not kept: nothing else can be issued under it, and a new set is a new CA.
//!
//! Written once and kept while valid: [`ensure`] leaves a directory alone whose set is complete
//! and more than [`RENEW_BEFORE_DAYS`] days from expiry.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// How long a set is valid.
pub const VALID_DAYS: i64 = 90;
/// A set this close to expiry is replaced.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// The CA every party trusts.
pub const CA: &str = "ca.pem";
/// When the set expires (Unix seconds), written with it.
const EXPIRES: &str = "expires";

/// A party with a certificate: its name (the files' stem and its DNS name) and whether it
/// serves (server authentication) or calls (client authentication).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    pub name: &'static str,
    pub serves: bool,
}

/// The backend's inference listeners.
pub const BACKEND: Party = Party { name: "backend", serves: true };
/// The sample collector.
pub const COLLECTOR: Party = Party { name: "collector", serves: true };
/// Envoy, the one client the others accept.
pub const ENVOY: Party = Party { name: "envoy", serves: false };
pub const PARTIES: [Party; 3] = [BACKEND, COLLECTOR, ENVOY];

impl Party {
    /// Its certificate and key in `dir`.
    pub fn files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(format!("{}.pem", self.name)), dir.join(format!("{}-key.pem", self.name)))
    }

    /// What a server needs to require Envoy's certificate (for a party that serves).
    pub fn server_files(&self, dir: &Path) -> crate::TlsFiles {
        let (cert, key) = self.files(dir);
        crate::TlsFiles { cert, key, client_ca: dir.join(CA) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("generating the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Whether `dir` holds a whole set that is valid for at least `RENEW_BEFORE_DAYS` more days.
pub fn current(dir: &Path, now_unix: i64) -> bool {
    let complete = std::iter::once(dir.join(CA))
        .chain(PARTIES.iter().flat_map(|p| {
            let (c, k) = p.files(dir);
            [c, k]
        }))
        .all(|p| p.is_file());
    let expires = std::fs::read_to_string(dir.join(EXPIRES)).ok().and_then(|t| t.trim().parse::<i64>().ok());
    complete && expires.is_some_and(|e| e - now_unix > RENEW_BEFORE_DAYS * 86_400)
}

/// Writes a new set into `dir` unless it holds a current one; whether it wrote.
pub fn ensure(dir: &Path) -> Result<bool, GenerateError> {
    let now = time::OffsetDateTime::now_utc();
    if current(dir, now.unix_timestamp()) {
        return Ok(false);
    }
    write(dir, now)?;
    Ok(true)
}

fn write(dir: &Path, now: time::OffsetDateTime) -> Result<(), GenerateError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GenerateError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let not_after = now + time::Duration::days(VALID_DAYS);
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Switchyard local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (now - time::Duration::minutes(5), not_after);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    for party in PARTIES {
        let mut p = CertificateParams::new(vec![party.name.to_owned(), "localhost".to_owned()])?;
        p.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        p.distinguished_name.push(DnType::CommonName, party.name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages =
            vec![if party.serves { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        (p.not_before, p.not_after) = (now - time::Duration::minutes(5), not_after);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = party.files(dir);
        write_file(&cert_path, &cert.pem(), false).map_err(io(&cert_path))?;
        write_file(&key_path, &key.serialize_pem(), true).map_err(io(&key_path))?;
    }
    let ca_path = dir.join(CA);
    write_file(&ca_path, &ca_cert.pem(), false).map_err(io(&ca_path))?;
    // Last: a set without its expiry is not current, so an interrupted write is redone.
    let expires = dir.join(EXPIRES);
    write_file(&expires, &format!("{}\n", not_after.unix_timestamp()), false).map_err(io(&expires))
}

/// Replaces `path` whole (a temporary file renamed over it); a key is readable by its owner only.
pub(crate) fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(if secret { 0o600 } else { 0o644 }).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_written_once_and_kept_while_current() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        assert!(!ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")), "a current set is kept");
        let (_, key) = ENVOY.files(dir.path());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap_or_else(|e| panic!("{e}")).permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // Near expiry, or incomplete: a new set.
        let soon = time::OffsetDateTime::now_utc().unix_timestamp() + (RENEW_BEFORE_DAYS - 1) * 86_400;
        std::fs::write(dir.path().join(EXPIRES), format!("{soon}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!current(dir.path(), time::OffsetDateTime::now_utc().unix_timestamp()));
        assert!(ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        std::fs::remove_file(dir.path().join(CA)).unwrap_or_else(|e| panic!("{e}"));
        assert!(ensure(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        // What was written loads as a server that requires client certificates.
        crate::ServerTls::load(&BACKEND.server_files(dir.path()), &[b"http/1.1"]).unwrap_or_else(|e| panic!("{e}"));
    }
}
