//! The unit files in `systemd/` pass `systemd-analyze verify`, with `ExecStart` pointed at
//! the binary under test (the files name `/usr/local/bin/appliance`, which a test machine
//! need not have). `.ci/run` installs systemd, so a machine without `systemd-analyze` fails
//! here instead of passing without checking anything.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_appliance");

#[test]
fn every_unit_file_passes_systemd_analyze_verify() {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze is not installed (apt-get install systemd; .ci/run does)");
    assert!(version.status.success(), "systemd-analyze --version failed");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let tmp = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Type=notify"), "{name}: Type=notify");
        assert!(text.contains("WatchdogSec="), "{name}: WatchdogSec");
        assert!(text.contains("NoNewPrivileges=yes"), "{name}");
        assert!(text.contains("ProtectSystem=strict"), "{name}");
        assert!(text.contains("Restart=on-failure"), "{name}");
        // A template is verified as an instance, as `systemctl start name@node` would run it.
        let name = name.replace("@.service", "@colorteller-white-vn.service");
        std::fs::write(
            tmp.path().join(&name),
            text.replace("/usr/local/bin/appliance", BIN),
        )
        .unwrap();
        units.push(name);
    }
    units.sort();
    assert_eq!(
        units,
        [
            "appliance-control.service",
            "appliance-gateway.service",
            "appliance-sidecar@colorteller-white-vn.service"
        ]
    );
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(tmp.path().join(unit))
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{unit}: {text}");
        assert!(text.trim().is_empty(), "{unit} has warnings: {text}");
    }
}

#[test]
fn sidecar_template_reads_identity_and_token_from_its_environment_file() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/appliance-sidecar@.service"),
    )
    .unwrap();
    assert!(text.contains("EnvironmentFile=/etc/appliance/sidecar-%i.env"));
    for var in [
        "APPMESH_VIRTUAL_NODE_NAME",
        "APPLIANCE_TOKEN",
        "APPLIANCE_CONTROL",
        "APPLIANCE_STATE_DIR",
    ] {
        assert!(text.contains(var), "{var} is documented");
    }
    // The binary reads them: --help names the environment variables it takes.
    let help = Command::new(BIN)
        .args(["sidecar", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "APPLIANCE_TOKEN",
        "APPLIANCE_CONTROL",
        "APPLIANCE_STATE_DIR",
    ] {
        assert!(help.contains(var), "sidecar --help: {var}\n{help}");
    }
}

#[test]
fn sidecar_intercept_drop_in_installs_and_removes_the_rules_and_passes_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let unit = std::fs::read_to_string(root.join("appliance-sidecar@.service")).unwrap();
    let drop_in =
        std::fs::read_to_string(root.join("appliance-sidecar@.service.d/intercept.conf")).unwrap();
    for line in [
        "ExecStartPre=+/usr/local/bin/appliance intercept install",
        "ExecStopPost=+/usr/local/bin/appliance intercept remove",
        "User=1337",
        "DynamicUser=no",
    ] {
        assert!(drop_in.lines().any(|l| l == line), "intercept.conf: {line}");
    }
    for var in [
        "APPMESH_APP_PORTS",
        "APPMESH_IGNORE_UID",
        "APPLIANCE_LISTEN=0.0.0.0:15000",
    ] {
        assert!(drop_in.contains(var), "intercept.conf documents {var}");
    }
    // The drop-in is read from `<unit>.d/` on the unit path: an unknown key in it would warn.
    let tmp = tempfile::tempdir().unwrap();
    let name = "appliance-sidecar@colorteller-white-vn.service";
    std::fs::write(
        tmp.path().join(name),
        unit.replace("/usr/local/bin/appliance", BIN),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join(format!("{name}.d"))).unwrap();
    std::fs::write(
        tmp.path().join(format!("{name}.d/intercept.conf")),
        drop_in.replace("/usr/local/bin/appliance", BIN),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(tmp.path().join(name))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.path().display()))
        .output()
        .expect("systemd-analyze is not installed (apt-get install systemd; .ci/run does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.trim().is_empty(),
        "intercept.conf has warnings: {text}"
    );
}
