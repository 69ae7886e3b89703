use std::process::Command;

use rcgen::{CertificateParams, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;

use super::*;

fn config() -> CaConfig {
    CaConfig {
        trust_domain: "appliance.local".into(),
        region: "us-west-2".into(),
        account: "123456789012".into(),
        leaf_ttl: DEFAULT_LEAF_TTL,
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn new_ca() -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(&dir.path().join("certs"), config(), now()).unwrap();
    (dir, ca)
}

fn csr() -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(vec!["ignored.example".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    (key, csr.pem().unwrap())
}

fn identity() -> Identity {
    Identity::parse("mesh/m/virtualNode/colorteller-white-vn").unwrap()
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verifies a chain for `name` at `at` against the CA's bundle with rustls's webpki verifier.
fn verify(
    bundle: &str,
    chain_pem: &str,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    for c in certs(bundle) {
        roots.add(c).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
        .build()
        .unwrap();
    let chain = certs(chain_pem);
    let when =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*verifier,
        &chain[0],
        &chain[1..],
        &ServerName::try_from(name.to_owned()).unwrap(),
        &[],
        when,
    )
    .map(|_| ())
}

#[test]
fn a_leaf_from_a_csr_verifies_with_webpki_for_its_dns_names() {
    let (_d, ca) = new_ca();
    let (_key, csr) = csr();
    let leaf = ca
        .issue_leaf(
            &identity(),
            &csr,
            &["colorteller-white.default.svc.cluster.local".into()],
            now(),
        )
        .unwrap();
    verify(
        &ca.bundle_pem(),
        &leaf.chain_pem,
        "colorteller-white.default.svc.cluster.local",
        now(),
    )
    .unwrap();
    assert_eq!(
        certs(&leaf.chain_pem).len(),
        2,
        "chain = leaf + intermediate"
    );
}

#[test]
fn the_leaf_carries_the_spiffe_id_and_only_the_names_the_ca_chose() {
    let (_d, ca) = new_ca();
    let (_key, csr) = csr();
    let leaf = ca
        .issue_leaf(
            &identity(),
            &csr,
            &["a.local".into(), "*.svc.local".into()],
            now(),
        )
        .unwrap();
    let der = &certs(&leaf.chain_pem)[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
    assert!(
        names.contains(
            &"URI(spiffe://appliance.local/mesh/m/virtualNode/colorteller-white-vn)".to_owned()
        ),
        "{names:?}"
    );
    assert!(names.contains(&"DNSName(a.local)".to_owned()), "{names:?}");
    assert!(
        names.contains(&"DNSName(*.svc.local)".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("ignored.example")),
        "the CSR's names must not be copied: {names:?}"
    );
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(life, (DEFAULT_LEAF_TTL + BACKDATE).whole_seconds());
}

#[test]
fn a_leaf_for_another_name_from_another_ca_or_expired_is_rejected() {
    let (_d, ca) = new_ca();
    let (_d2, other) = new_ca();
    let (_key, csr) = csr();
    let leaf = ca
        .issue_leaf(&identity(), &csr, &["a.local".into()], now())
        .unwrap();
    assert!(
        verify(&ca.bundle_pem(), &leaf.chain_pem, "b.local", now()).is_err(),
        "another name"
    );
    assert!(
        verify(&other.bundle_pem(), &leaf.chain_pem, "a.local", now()).is_err(),
        "another CA"
    );
    let later = now() + DEFAULT_LEAF_TTL + time::Duration::hours(1);
    let err = verify(&ca.bundle_pem(), &leaf.chain_pem, "a.local", later).unwrap_err();
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");
}

#[test]
fn openssl_verifies_the_chain_and_reads_the_sans() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is required for this test (.ci/run installs it)");
    }
    let (d, ca) = new_ca();
    let (_key, csr) = csr();
    let leaf = ca
        .issue_leaf(
            &identity(),
            &csr,
            &["colorteller-white.default.svc.cluster.local".into()],
            now(),
        )
        .unwrap();
    let chain = certs(&leaf.chain_pem);
    let pem = |der: &CertificateDer| {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref());
        let body: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            body.join("\n")
        )
    };
    let dir = d.path();
    let roots: String = ca
        .read()
        .authorities
        .iter()
        .filter(|a| a.record.role == Role::Root)
        .map(|a| a.cert_pem.clone())
        .collect();
    std::fs::write(dir.join("root.pem"), roots).unwrap();
    std::fs::write(dir.join("intermediate.pem"), pem(&chain[1])).unwrap();
    std::fs::write(dir.join("leaf.pem"), pem(&chain[0])).unwrap();
    let out = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "leaf.pem"])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("URI:spiffe://appliance.local/mesh/m/virtualNode/colorteller-white-vn"),
        "{text}"
    );
    assert!(
        text.contains("DNS:colorteller-white.default.svc.cluster.local"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
}

#[test]
fn key_files_are_owner_only_and_debug_shows_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let (d, ca) = new_ca();
    let mut keys = 0;
    for entry in std::fs::read_dir(d.path().join("certs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key")
            || path.file_name().is_some_and(|n| n == "state.json")
        {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            keys += 1;
        }
    }
    assert_eq!(keys, 3, "root key, intermediate key, state");
    let debug = format!("{ca:?} {:?}", ca.read().authorities);
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(!ca.bundle_pem().contains("PRIVATE KEY"));
}

#[test]
fn after_intermediate_rotation_old_and_new_leaves_verify_until_the_old_ones_expire() {
    let (_d, ca) = new_ca();
    let t0 = now();
    let (_k, csr) = csr();
    let old = ca
        .issue_leaf(&identity(), &csr, &["a.local".into()], t0)
        .unwrap();
    ca.rotate_intermediate(t0).unwrap();
    let new = ca
        .issue_leaf(&identity(), &csr, &["a.local".into()], t0)
        .unwrap();
    assert_ne!(
        certs(&old.chain_pem)[1],
        certs(&new.chain_pem)[1],
        "the new leaf has the new intermediate"
    );
    let bundle = ca.bundle_pem();
    assert_eq!(certs(&bundle).len(), 3, "root + old and new intermediates");
    verify(&bundle, &old.chain_pem, "a.local", t0).unwrap();
    verify(&bundle, &new.chain_pem, "a.local", t0).unwrap();
    assert_eq!(
        ca.prune(t0 + time::Duration::hours(1)).unwrap(),
        0,
        "old leaves still live"
    );
    assert_eq!(
        ca.prune(t0 + DEFAULT_LEAF_TTL + time::Duration::hours(1))
            .unwrap(),
        1
    );
    assert_eq!(certs(&ca.bundle_pem()).len(), 2, "root + new intermediate");
}

#[test]
fn root_rotation_keeps_the_old_root_until_its_leaves_expire() {
    let (_d, ca) = new_ca();
    let t0 = now();
    let (_k, csr) = csr();
    let old_pin = ca.root_fingerprint();
    let old = ca
        .issue_leaf(&identity(), &csr, &["a.local".into()], t0)
        .unwrap();
    ca.rotate_root(t0).unwrap();
    assert_ne!(ca.root_fingerprint(), old_pin);
    let new = ca
        .issue_leaf(&identity(), &csr, &["a.local".into()], t0)
        .unwrap();
    let bundle = ca.bundle_pem();
    assert_eq!(certs(&bundle).len(), 4);
    verify(&bundle, &old.chain_pem, "a.local", t0).unwrap();
    verify(&bundle, &new.chain_pem, "a.local", t0).unwrap();
    assert_eq!(
        ca.prune(t0 + DEFAULT_LEAF_TTL + time::Duration::hours(1))
            .unwrap(),
        2,
        "old root and old intermediate"
    );
    assert!(verify(&ca.bundle_pem(), &old.chain_pem, "a.local", t0).is_err());
    verify(&ca.bundle_pem(), &new.chain_pem, "a.local", t0).unwrap();
}

#[test]
fn a_revoked_identity_gets_no_leaf_and_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let (arn, ca_arn) = {
        let ca = Ca::open_or_create(&certs_dir, config(), now()).unwrap();
        ca.revoke_identity(&identity()).unwrap();
        (
            ca.request_certificate("*.default.svc.cluster.local", &[], now())
                .unwrap(),
            ca.ca_arn(),
        )
    };
    let ca = Ca::open_or_create(&certs_dir, config(), now()).unwrap();
    let (_k, csr) = csr();
    let err = ca.issue_leaf(&identity(), &csr, &[], now()).unwrap_err();
    assert!(
        err.to_string()
            .contains("mesh/m/virtualNode/colorteller-white-vn is revoked"),
        "{err}"
    );
    assert_eq!(ca.ca_arn(), ca_arn, "the CA keeps its ARN");
    assert!(ca.is_known_certificate_arn(&arn) && ca.is_known_ca_arn(&ca_arn));
    assert_eq!(
        ca.certificate(&arn).unwrap().dns_names(),
        vec!["*.default.svc.cluster.local".to_owned()]
    );
}

#[test]
fn arns_have_acm_shapes() {
    let (_d, ca) = new_ca();
    assert!(ca
        .ca_arn()
        .starts_with("arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/"));
    let arn = ca
        .request_certificate("a.local", &["b.local".into()], now())
        .unwrap();
    assert!(arn.starts_with("arn:aws:acm:us-west-2:123456789012:certificate/"));
    let d = ca.describe_certificate_authority();
    assert_eq!(d["CertificateAuthority"]["Status"], "ACTIVE");
    assert_eq!(d["CertificateAuthority"]["Arn"], ca.ca_arn());
    assert!(ca.request_certificate("not a name", &[], now()).is_err());
}

#[test]
fn garbage_csrs_and_corrupt_state_get_clear_errors() {
    let (d, ca) = new_ca();
    assert!(matches!(
        ca.issue_leaf(&identity(), "not a csr", &[], now()),
        Err(CaError::Csr(_))
    ));
    std::fs::write(d.path().join("certs/state.json"), "{").unwrap();
    let err = Ca::open_or_create(&d.path().join("certs"), config(), now())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("state.json") && err.contains("not CA state"),
        "{err}"
    );
}

#[test]
fn a_server_certificate_names_the_host_and_the_address() {
    let (_d, ca) = new_ca();
    let (chain, key) = ca
        .issue_server_cert(
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            now(),
        )
        .unwrap();
    assert!(key.contains("PRIVATE KEY"));
    verify(&ca.bundle_pem(), &chain, "localhost", now()).unwrap();
    verify(&ca.bundle_pem(), &chain, "127.0.0.1", now()).unwrap();
}

/// Leaves per second from CSRs. Run: `cargo test --release --lib ca::tests::bench_issue -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_issue() {
    let (_d, ca) = new_ca();
    let n: usize = std::env::var("APPLIANCE_BENCH_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let csrs: Vec<String> = (0..64).map(|_| csr().1).collect();
    let start = std::time::Instant::now();
    for i in 0..n {
        ca.issue_leaf(
            &identity(),
            &csrs[i % csrs.len()],
            &["a.local".into()],
            now(),
        )
        .unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "issued {n} leaves from CSRs in {secs:.2} s: {:.0} leaves/s (one thread)",
        n as f64 / secs
    );
}
