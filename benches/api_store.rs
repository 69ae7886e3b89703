//! API and store benchmark: creates 10,000 virtual nodes and 1,000 routes through the signed
//! API of a real `appliance control` (release build), then prints writes/s and the p50/p99
//! latency of describe and of a full paginated list. Run: `cargo bench --bench api_store`.
//! Sizes can be changed with APPLIANCE_BENCH_NODES / APPLIANCE_BENCH_ROUTES.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Api, Control};

const WRITERS: usize = 8;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `n` calls of `f(i)` on WRITERS threads; returns (elapsed, per-call latencies).
fn parallel(
    n: usize,
    control: &Control,
    f: impl Fn(&Api, usize) + Send + Sync + 'static,
) -> (Duration, Vec<Duration>) {
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (f, next, api) = (f.clone(), next.clone(), Api::new(control));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break lat;
                    }
                    let t = Instant::now();
                    f(&api, i);
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    (start.elapsed(), all)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists harness=false benches this way
    }
    let nodes = env_or("APPLIANCE_BENCH_NODES", 10_000);
    let routes = env_or("APPLIANCE_BENCH_ROUTES", 1_000);
    let control = Control::start();
    let api = Api::new(&control);
    assert_eq!(
        api.call("PUT", "/v20190125/meshes", Some(r#"{"meshName":"bench"}"#))
            .0,
        200
    );
    let router = r#"{"virtualRouterName":"vr","spec":{"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}]}}"#;
    assert_eq!(
        api.call(
            "PUT",
            "/v20190125/meshes/bench/virtualRouters",
            Some(router)
        )
        .0,
        200
    );

    let (t, lat) = parallel(nodes, &control, |api, i| {
        let body = format!(
            r#"{{"virtualNodeName":"vn-{i:05}","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}},"healthCheck":{{"protocol":"http","path":"/ping","healthyThreshold":2,"unhealthyThreshold":2,"intervalMillis":5000,"timeoutMillis":2000}}}}],"serviceDiscovery":{{"dns":{{"hostname":"vn-{i}.local"}}}}}}}}"#
        );
        let (s, _, b) = api.call("PUT", "/v20190125/meshes/bench/virtualNodes", Some(&body));
        assert_eq!(s, 200, "{b}");
    });
    println!(
        "create virtual node: {nodes} writes in {:.2} s = {:.0} writes/s ({WRITERS} clients), p50 {:.2} ms, p99 {:.2} ms",
        t.as_secs_f64(),
        nodes as f64 / t.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    let (t, lat) = parallel(routes, &control, move |api, i| {
        let body = format!(
            r#"{{"routeName":"r-{i:04}","spec":{{"httpRoute":{{"match":{{"prefix":"/r{i}"}},"action":{{"weightedTargets":[{{"virtualNode":"vn-{:05}","weight":1}},{{"virtualNode":"vn-{:05}","weight":1}}]}}}}}}}}"#,
            i % nodes,
            (i + 1) % nodes
        );
        let (s, _, b) = api.call(
            "PUT",
            "/v20190125/meshes/bench/virtualRouter/vr/routes",
            Some(&body),
        );
        assert_eq!(s, 200, "{b}");
    });
    println!(
        "create route: {routes} writes in {:.2} s = {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
        t.as_secs_f64(),
        routes as f64 / t.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    let (t, lat) = parallel(5_000, &control, move |api, i| {
        let (s, _, _) = api.call(
            "GET",
            &format!(
                "/v20190125/meshes/bench/virtualNodes/vn-{:05}",
                (i * 7919) % nodes
            ),
            None,
        );
        assert_eq!(s, 200);
    });
    println!(
        "describe virtual node: 5000 calls, {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms",
        5000.0 / t.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    let (_, lat) = parallel(20, &control, move |api, _| {
        let mut token: Option<String> = None;
        let mut seen = 0;
        loop {
            let q = match &token {
                Some(t) => format!("/v20190125/meshes/bench/virtualNodes?limit=100&nextToken={t}"),
                None => "/v20190125/meshes/bench/virtualNodes?limit=100".to_owned(),
            };
            let (_, _, page) = api.call("GET", &q, None);
            seen += page["virtualNodes"].as_array().map(Vec::len).unwrap_or(0);
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, nodes);
    });
    println!(
        "full paginated list of {nodes} virtual nodes ({} pages of 100): p50 {:.1} ms, p99 {:.1} ms (20 lists, {WRITERS} clients)",
        nodes.div_ceil(100),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", control.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("control plane {rss}");
}
