//! SIGKILL the control plane in the middle of a stream of writes, restart it on the same data
//! directory, and find every write that had been acknowledged.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Api, Control};

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let control = Control::start_in(&dir);
    let api = Api::new(&control);
    let (status, _, _) = api.call("PUT", "/v20190125/meshes", Some(r#"{"meshName":"m"}"#));
    assert_eq!(status, 200);

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, stop, api) = (acked.clone(), stop.clone(), Api::new(&control));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("vn-{w}-{i}");
                    let body = format!(
                        r#"{{"virtualNodeName":"{name}","spec":{{"listeners":[{{"portMapping":{{"port":8080,"protocol":"http"}}}}]}}}}"#
                    );
                    match api.try_call("PUT", "/v20190125/meshes/m/virtualNodes", Some(&body)) {
                        Ok((200, _, _)) => acked.lock().unwrap().push(name),
                        _ => break, // the server is gone: this write was never acknowledged
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = acked.lock().unwrap().len();
    control.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().ok();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        before_kill > 10,
        "only {before_kill} writes before the kill: the test did not exercise anything"
    );

    let control = Control::start_in(&dir);
    let api = Api::new(&control);
    let mut stored = std::collections::BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("/v20190125/meshes/m/virtualNodes?limit=100&nextToken={t}"),
            None => "/v20190125/meshes/m/virtualNodes?limit=100".to_owned(),
        };
        let (status, _, page) = api.call("GET", &q, None);
        assert_eq!(status, 200, "{page}");
        for n in page["virtualNodes"].as_array().unwrap() {
            stored.insert(n["virtualNodeName"].as_str().unwrap().to_owned());
        }
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost after SIGKILL: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "{} acknowledged writes, {} stored after restart, 0 lost",
        acked.len(),
        stored.len()
    );
}
