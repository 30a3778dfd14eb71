//! Loading pairs: every way a pair can be wrong names its file and says
//! what is wrong; the table picks by name.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{CertTable, TlsError, load, provider};
use berth_config::CertFiles;
use std::path::Path;
use std::time::SystemTime;

/// A self-signed pair for `names` written to `dir/<stem>.{crt,key}`,
/// valid between the given years.
fn pair(dir: &Path, stem: &str, names: &[&str], years: (i32, i32)) -> CertFiles {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let files = CertFiles {
        cert_file: dir.join(format!("{stem}.crt")),
        key_file: dir.join(format!("{stem}.key")),
        names: Vec::new(),
    };
    std::fs::write(&files.cert_file, cert.pem()).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    files
}

fn problem(files: &CertFiles) -> (String, String) {
    match load(files, &provider(), SystemTime::now()) {
        Err(TlsError::File { file, reason }) => (file.display().to_string(), reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_good_pair_loads_with_its_names_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let files = pair(dir.path(), "m", &["M.example", "*.m.example"], (2020, 2090));
    let served = load(&files, &provider(), SystemTime::now()).unwrap();
    assert_eq!(served.names, ["m.example", "*.m.example"]);
    assert_eq!(served.not_after, 3_786_912_000);
}

#[test]
fn each_bad_pair_names_the_file_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let good = pair(dir.path(), "a", &["a.example"], (2020, 2090));
    let other = pair(dir.path(), "b", &["b.example"], (2020, 2090));

    let mismatched = CertFiles {
        key_file: other.key_file.clone(),
        ..good.clone()
    };
    let (file, reason) = problem(&mismatched);
    assert_eq!(file, other.key_file.display().to_string());
    assert!(
        reason.contains("is not the key of the certificate in"),
        "{reason}"
    );

    let expired = pair(dir.path(), "old", &["a.example"], (2000, 2001));
    let (file, reason) = problem(&expired);
    assert_eq!(file, expired.cert_file.display().to_string());
    assert_eq!(reason, "its certificate expired on 2001-01-01T00:00:00Z");

    let early = pair(dir.path(), "new", &["a.example"], (2080, 2090));
    assert!(
        problem(&early)
            .1
            .starts_with("its certificate is not valid before 2080")
    );

    let swapped = CertFiles {
        cert_file: good.key_file.clone(),
        key_file: good.cert_file.clone(),
        names: Vec::new(),
    };
    let (file, reason) = problem(&swapped);
    assert_eq!(file, good.key_file.display().to_string());
    assert!(reason.starts_with("holds no CERTIFICATE block"), "{reason}");
    let keyless = CertFiles {
        key_file: good.cert_file.clone(),
        ..good.clone()
    };
    assert!(problem(&keyless).1.starts_with("holds no private key"));

    std::fs::write(
        dir.path().join("junk.crt"),
        "-----BEGIN CERTIFICATE-----\n!!\n",
    )
    .unwrap();
    let junk = CertFiles {
        cert_file: dir.path().join("junk.crt"),
        ..good.clone()
    };
    assert!(
        problem(&junk).1.starts_with("is not a PEM file"),
        "{:?}",
        problem(&junk)
    );
    let missing = CertFiles {
        cert_file: dir.path().join("none.crt"),
        ..good
    };
    assert!(problem(&missing).1.starts_with("cannot read it: "));
}

#[test]
fn the_table_picks_exact_then_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let provider = provider();
    let now = SystemTime::now();
    let main = load(
        &pair(dir.path(), "main", &["m.example"], (2020, 2090)),
        &provider,
        now,
    )
    .unwrap();
    let wild = load(
        &pair(dir.path(), "w", &["*.w.example"], (2020, 2090)),
        &provider,
        now,
    )
    .unwrap();
    let exact = load(
        &pair(dir.path(), "x", &["x.w.example"], (2020, 2090)),
        &provider,
        now,
    )
    .unwrap();
    let mut table = CertTable::default();
    table.add(&main, &[], "m".into());
    table.add(&wild, &["*.w.example".to_owned()], "w".into());
    table.add(&exact, &["x.w.example".to_owned()], "x".into());
    let same = |a: Option<std::sync::Arc<rustls::sign::CertifiedKey>>, b: &crate::Served| {
        std::sync::Arc::ptr_eq(&a.unwrap(), &b.key)
    };
    assert!(same(table.pick(Some("X.w.example")), &exact));
    assert!(same(table.pick(Some("docker.w.example")), &wild));
    assert!(same(table.pick(Some("m.example")), &main));
    assert!(same(table.pick(Some("elsewhere.example")), &main));
    assert!(same(table.pick(None), &main));
}
