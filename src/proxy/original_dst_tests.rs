use super::*;

/// A node with two tcp backends: `db` (endpoint 10.0.0.9:5432) and `cache` (port 6379,
/// reached by a DNS name), both on their targets' listener ports.
fn config(filter: &str) -> ProxyConfig {
    let cluster = |node: &str, port: u16, endpoint: &str| serde_json::json!({"node": node, "port": port, "protocol": "tcp", "endpoints": [endpoint]});
    let route = |name: &str, cluster: &str| {
        serde_json::json!([{"name": name, "targets": [{"cluster": cluster, "weight": 1}],
            "idleTimeoutMs": 0, "connectRetries": 0}])
    };
    let json = serde_json::json!({
        "identity": "mesh/m/virtualNode/app",
        "version": 1,
        "listeners": [],
        "services": {},
        "clusters": {
            "db-vn": cluster("db-vn", 5432, "10.0.0.9:5432"),
            "db2-vn": cluster("db2-vn", 5432, "10.0.0.10:5432"),
            "cache-vn": cluster("cache-vn", 6379, "cache.local:6379"),
        },
        "tcpRoutes": {
            "db.local": route("virtualNode/db-vn", "db-vn"),
            "db2.local": route("virtualNode/db2-vn", "db2-vn"),
            "cache.local": route("virtualNode/cache-vn", "cache-vn"),
        },
        "egressFilter": filter,
    });
    ProxyConfig::from_json(&json.to_string()).expect("test config")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const LOCAL: &str = "127.0.0.1:15001";

#[test]
fn a_declared_endpoint_picks_its_backend_even_when_the_port_is_shared() {
    assert_eq!(
        decide(&config("DROP_ALL"), addr("10.0.0.10:5432"), addr(LOCAL)),
        Decision::Mesh {
            service: "db2.local".into(),
            port: 5432
        }
    );
}

#[test]
fn a_port_only_one_tcp_backend_has_picks_it() {
    assert_eq!(
        decide(&config("DROP_ALL"), addr("10.1.2.3:6379"), addr(LOCAL)),
        Decision::Mesh {
            service: "cache.local".into(),
            port: 6379
        }
    );
}

#[test]
fn a_port_several_backends_share_with_no_endpoint_match_is_refused_naming_them() {
    let d = decide(&config("ALLOW_ALL"), addr("10.9.9.9:5432"), addr(LOCAL));
    let Decision::Refuse(r) = d else {
        panic!("{d:?}")
    };
    assert!(r.to_string().contains("db.local, db2.local"), "{r}");
}

#[test]
fn an_undeclared_destination_follows_the_egress_filter() {
    let to = addr("192.0.2.1:7000");
    assert_eq!(
        decide(&config("ALLOW_ALL"), to, addr(LOCAL)),
        Decision::Sniff {
            otherwise: Fallback::Passthrough(to)
        }
    );
    let d = decide(&config("DROP_ALL"), to, addr(LOCAL));
    assert_eq!(
        d,
        Decision::Sniff {
            otherwise: Fallback::Refuse(Refusal::NotABackend(to))
        }
    );
    assert!(Refusal::NotABackend(to).to_string().contains("DROP_ALL"));
}

#[test]
fn the_listener_itself_is_refused_as_a_loop() {
    for to in ["127.0.0.1:15001", "127.0.0.2:15001"] {
        assert_eq!(
            decide(&config("ALLOW_ALL"), addr(to), addr(LOCAL)),
            Decision::Refuse(Refusal::Loop(addr(to)))
        );
    }
}

#[test]
fn http_is_told_from_other_bytes_by_its_first_word() {
    for (head, want) in [
        (&b"GET / HTTP/1.1\r\n"[..], Sniff::Http),
        (b"POST /x", Sniff::Http),
        (b"PRI * HTTP/2.0\r\n", Sniff::Http),
        (b"GE", Sniff::NeedMore),
        (b"", Sniff::NeedMore),
        (b"GETX", Sniff::Other),
        (b"\x16\x03\x01\x02\x00", Sniff::Other),
        (b"hello\n", Sniff::Other),
        (b"get / HTTP/1.1", Sniff::Other),
    ] {
        assert_eq!(sniff(head), want, "{:?}", String::from_utf8_lossy(head));
    }
}
