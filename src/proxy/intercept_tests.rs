use std::collections::HashMap;

use super::*;

fn config(vars: &[(&str, &str)], own_uid: Option<u32>) -> Result<InterceptConfig, InterceptError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    InterceptConfig::from_vars(|k| map.get(k).cloned(), own_uid)
}

fn lines(commands: &[Vec<String>]) -> Vec<String> {
    commands.iter().map(|c| c.join(" ")).collect()
}

#[test]
fn app_mesh_defaults_give_app_mesh_rules() {
    let c = config(
        &[
            ("APPMESH_IGNORE_UID", "1337"),
            ("APPMESH_APP_PORTS", "8080, 9090"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(
        lines(&c.install_commands()),
        [
            "-t nat -N APPMESH_EGRESS",
            "-t nat -N APPMESH_INGRESS",
            "-t nat -A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN",
            "-t nat -A APPMESH_EGRESS -p tcp -m multiport --dports 22 -j RETURN",
            "-t nat -A APPMESH_EGRESS -p tcp -d 169.254.169.254 -j RETURN",
            "-t nat -A APPMESH_EGRESS -p tcp -d 169.254.170.2 -j RETURN",
            "-t nat -A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001",
            "-t nat -A APPMESH_INGRESS -p tcp -m multiport --dports 8080,9090 -j REDIRECT --to-ports 15000",
            "-t nat -A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS",
            "-t nat -A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j APPMESH_INGRESS",
        ]
    );
}

#[test]
fn every_knob_reaches_the_rules() {
    let c = config(
        &[
            ("APPMESH_IGNORE_UID", "1337"),
            ("APPMESH_IGNORE_GID", "1338"),
            ("APPMESH_ENVOY_INGRESS_PORT", "16000"),
            ("APPMESH_PROXY_EGRESS_PORT", "16001"),
            ("APPMESH_EGRESS_IGNORED_IP", "10.0.0.0/8,192.168.1.1"),
            ("APPMESH_EGRESS_IGNORED_PORTS", "5432,22"),
        ],
        Some(0),
    )
    .unwrap();
    assert_eq!(
        c.ignore_uid,
        Some(1337),
        "an explicit uid beats the sidecar's own"
    );
    assert_eq!(c.egress_ignored_ports, [5432, 22], "22 is not repeated");
    let l = lines(&c.install_commands());
    for want in [
        "-t nat -A APPMESH_EGRESS -m owner --gid-owner 1338 -j RETURN",
        "-t nat -A APPMESH_EGRESS -p tcp -m multiport --dports 5432,22 -j RETURN",
        "-t nat -A APPMESH_EGRESS -p tcp -d 10.0.0.0/8 -j RETURN",
        "-t nat -A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 16001",
    ] {
        assert!(l.iter().any(|x| x == want), "{want} missing from {l:#?}");
    }
    assert!(
        !l.iter().any(|x| x.contains("APPMESH_INGRESS -p")),
        "no app ports: no inbound redirect"
    );
}

#[test]
fn the_sidecars_own_uid_is_ignored_when_none_is_set() {
    assert_eq!(config(&[], Some(998)).unwrap().ignore_uid, Some(998));
}

#[test]
fn more_than_fifteen_ports_are_split_across_multiport_rules() {
    let ports: Vec<String> = (1000..1020).map(|p| p.to_string()).collect();
    let c = config(
        &[
            ("APPMESH_IGNORE_UID", "1"),
            ("APPMESH_APP_PORTS", &ports.join(",")),
        ],
        None,
    )
    .unwrap();
    let inbound: Vec<String> = lines(&c.install_commands())
        .into_iter()
        .filter(|l| l.contains("-A APPMESH_INGRESS"))
        .collect();
    assert_eq!(inbound.len(), 2, "{inbound:#?}");
}

#[test]
fn every_bad_variable_is_named_at_once() {
    let err = config(
        &[
            ("APPMESH_IGNORE_UID", "envoy"),
            ("APPMESH_APP_PORTS", "8080,70000"),
            (
                "APPMESH_EGRESS_IGNORED_IP",
                "169.254.169.254,fd00::1,10.0.0.0/40",
            ),
            ("APPMESH_ENVOY_EGRESS_PORT", "15001"),
            ("APPMESH_PROXY_EGRESS_PORT", "15002"),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "APPMESH_IGNORE_UID=\"envoy\"",
        "APPMESH_APP_PORTS: \"70000\"",
        "\"fd00::1\"",
        "\"10.0.0.0/40\"",
        "disagree",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
}

#[test]
fn without_a_proxy_user_interception_is_refused() {
    let err = config(&[], None).unwrap_err().to_string();
    assert!(err.contains("APPMESH_IGNORE_UID"), "{err}");
}

#[test]
fn ipv6_interception_is_refused_as_not_supported() {
    let err = config(&[("APPMESH_ENABLE_IPV6", "1")], Some(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("IPv6 interception is not supported"), "{err}");
    assert!(config(&[("APPMESH_ENABLE_IPV6", "0")], Some(0)).is_ok());
}

#[test]
fn app_ports_may_not_include_the_proxys_ports() {
    let err = config(
        &[("APPMESH_IGNORE_UID", "1"), ("APPMESH_APP_PORTS", "15001")],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must not contain"), "{err}");
}

/// A fake `iptables` over a set of rules, which fails the `fail_at`-th append.
#[derive(Default)]
struct Fake {
    chains: Vec<String>,
    rules: Vec<(String, String)>,
    appends: usize,
    fail_at: Option<usize>,
}

impl Iptables for Fake {
    fn run(&mut self, a: &[String]) -> Result<String, InterceptError> {
        let fail = |why: &str| InterceptError::Command {
            command: a.join(" "),
            status: "exit status: 1".into(),
            stderr: why.into(),
        };
        match a.get(2).map(String::as_str) {
            Some("-N") if self.chains.contains(&a[3]) => Err(fail("chain exists")),
            Some("-N") => {
                self.chains.push(a[3].clone());
                Ok(String::new())
            }
            Some("-A") => {
                self.appends += 1;
                if Some(self.appends) == self.fail_at {
                    return Err(fail("no such match"));
                }
                self.rules.push((a[3].clone(), a[4..].join(" ")));
                Ok(String::new())
            }
            Some("-D") => {
                let rule = (a[3].clone(), a[4..].join(" "));
                let i = self
                    .rules
                    .iter()
                    .position(|r| *r == rule)
                    .ok_or_else(|| fail("no rule"))?;
                self.rules.remove(i);
                Ok(String::new())
            }
            Some("-F") => {
                self.rules.retain(|(c, _)| *c != a[3]);
                Ok(String::new())
            }
            Some("-X") => {
                self.chains.retain(|c| *c != a[3]);
                Ok(String::new())
            }
            Some("-S") => Ok(self
                .chains
                .iter()
                .map(|c| format!("-N {c}\n"))
                .chain(
                    self.rules
                        .iter()
                        .filter(|(c, _)| a.get(3).is_none_or(|h| h == c))
                        .map(|(c, r)| format!("-A {c} {r}\n")),
                )
                .collect()),
            _ => Err(fail("unexpected")),
        }
    }
}

fn sample() -> InterceptConfig {
    config(
        &[
            ("APPMESH_IGNORE_UID", "1337"),
            ("APPMESH_APP_PORTS", "8080"),
        ],
        None,
    )
    .unwrap()
}

#[test]
fn installing_twice_leaves_one_set_of_rules() {
    let mut ipt = Fake::default();
    install(&mut ipt, &sample()).unwrap();
    let once = (ipt.chains.clone(), ipt.rules.clone());
    install(&mut ipt, &sample()).unwrap();
    assert_eq!((ipt.chains.clone(), ipt.rules.clone()), once);
    assert_eq!(ipt.rules.iter().filter(|(c, _)| c == "OUTPUT").count(), 1);
}

#[test]
fn a_failure_part_way_removes_what_was_added() {
    for fail_at in 1..=8 {
        let mut ipt = Fake {
            fail_at: Some(fail_at),
            ..Fake::default()
        };
        let err = install(&mut ipt, &sample()).unwrap_err();
        assert!(matches!(err, InterceptError::RolledBack(_)), "{err}");
        assert!(
            err.to_string().contains("nothing is left installed"),
            "{err}"
        );
        assert!(
            ipt.chains.is_empty() && ipt.rules.is_empty(),
            "append {fail_at}: {:?}",
            ipt.rules
        );
    }
}

#[test]
fn removing_leaves_other_rules_alone_and_twice_is_fine() {
    let mut ipt = Fake::default();
    ipt.rules.push(("OUTPUT".into(), "-p udp -j ACCEPT".into()));
    install(&mut ipt, &sample()).unwrap();
    remove(&mut ipt).unwrap();
    remove(&mut ipt).unwrap();
    assert!(ipt.chains.is_empty());
    assert_eq!(
        ipt.rules,
        [("OUTPUT".to_owned(), "-p udp -j ACCEPT".to_owned())]
    );
}
