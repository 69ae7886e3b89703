//! Security hardening (issue 16): admin users can be listed, given a new password and
//! deleted (`appliance ctl list-admins`, `set-admin-password`, `delete-admin`), and either
//! change ends the user's sessions.

mod common;

use std::time::Duration;

use common::Control;
use serde_json::{json, Value};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// Signs in; returns (status, session cookie).
fn sign_in(c: &Control, user: &str, secret: &str) -> (u16, Option<String>) {
    let r = http()
        .post(format!("{}/appliance/v1/admin/session", c.endpoint()))
        .json(&json!({ "user": user, "secret": secret }))
        .send()
        .expect("sign-in sent");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (r.status().as_u16(), cookie)
}

fn whoami(c: &Control, cookie: &str) -> u16 {
    http()
        .get(format!("{}/appliance/v1/admin/session", c.endpoint()))
        .header("cookie", cookie)
        .send()
        .expect("whoami sent")
        .status()
        .as_u16()
}

fn users(c: &Control) -> Vec<String> {
    let out = c.ctl(&["list-admins"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    v["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["UserName"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn admin_users_are_listed_and_never_with_their_hash() {
    let c = Control::start();
    assert!(users(&c).is_empty());
    for u in ["ops", "dev"] {
        assert_eq!(c.ctl(&["create-admin", "--user-name", u]).code, 0);
    }
    assert_eq!(users(&c), ["dev", "ops"]);
    let out = c.ctl(&["list-admins"]);
    assert!(!out.stdout.contains("argon2"), "{}", out.stdout);
    assert!(out.stdout.contains("CreatedAt"), "{}", out.stdout);
}

#[test]
fn a_new_password_replaces_the_old_and_ends_the_users_sessions() {
    let c = Control::start();
    let made = c.ctl(&["create-admin", "--user-name", "ops"]);
    let old: Value = serde_json::from_str(&made.stdout).unwrap();
    let old = old["Password"].as_str().unwrap().to_owned();
    let (status, cookie) = sign_in(&c, "ops", &old);
    assert_eq!(status, 200);
    let cookie = cookie.expect("session cookie");
    assert_eq!(whoami(&c, &cookie), 200);
    let out = c.ctl(&[
        "set-admin-password",
        "--user-name",
        "ops",
        "--password",
        "a brand new password",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(whoami(&c, &cookie), 401, "the old session ended");
    assert_eq!(sign_in(&c, "ops", &old).0, 401, "the old password is gone");
    assert_eq!(sign_in(&c, "ops", "a brand new password").0, 200);
    let generated = c.ctl(&["set-admin-password", "--user-name", "ops"]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let v: Value = serde_json::from_str(&generated.stdout).unwrap();
    assert!(v["Password"].as_str().is_some_and(|p| p.len() >= 12), "{v}");
    let unknown = c.ctl(&["set-admin-password", "--user-name", "nobody"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("NotFoundException"),
        "{}",
        unknown.stderr
    );
    assert_eq!(users(&c), ["ops"], "no user was created by it");
    let short = c.ctl(&[
        "set-admin-password",
        "--user-name",
        "ops",
        "--password",
        "short",
    ]);
    assert_ne!(short.code, 0);
    assert!(short.stderr.contains("Password"), "{}", short.stderr);
}

#[test]
fn a_deleted_admin_cannot_sign_in_and_its_sessions_end() {
    let c = Control::start();
    let made = c.ctl(&["create-admin", "--user-name", "ops"]);
    let password: Value = serde_json::from_str(&made.stdout).unwrap();
    let password = password["Password"].as_str().unwrap().to_owned();
    let (_, cookie) = sign_in(&c, "ops", &password);
    let cookie = cookie.expect("session cookie");
    let out = c.ctl(&["delete-admin", "--user-name", "ops"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(whoami(&c, &cookie), 401, "the session ended");
    assert_eq!(sign_in(&c, "ops", &password).0, 401);
    assert!(users(&c).is_empty());
    let again = c.ctl(&["delete-admin", "--user-name", "ops"]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("NotFoundException"),
        "{}",
        again.stderr
    );
}
