//! `appliance ctl create-admin --user-name U [--password P]`: a user for the admin page. It
//! goes through the API (`POST /appliance/v1/admin/users`, signed with the caller's keys),
//! since the running control plane holds the store open; the control plane hashes the
//! password (Argon2id) before it is stored.

use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};

use super::request::{CallError, Client};
use super::{credentials, exit, print_result, usage_error, Globals};

/// Length of a generated password: ~143 bits from [A-Za-z0-9], beyond any offline guessing.
const GENERATED_PASSWORD_LEN: usize = 24;

/// For `appliance ctl help`.
pub const ABOUT: (&str, &str) = (
    "create-admin",
    "--user-name U [--password P]: a sign-in for the admin page (a password is generated if none is given)",
);

pub async fn create_admin(globals: &Globals, args: &[String]) -> anyhow::Result<u8> {
    let (mut user, mut password) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let slot = match arg.as_str() {
            "--user-name" => &mut user,
            "--password" => &mut password,
            other => return Ok(usage_error(&format!("Unknown options: {other}"))),
        };
        match it.next() {
            Some(v) => *slot = Some(v.clone()),
            None => {
                return Ok(usage_error(&format!(
                    "argument {arg}: expected one argument"
                )))
            }
        }
    }
    let Some(user) = user else {
        return Ok(usage_error(
            "the following arguments are required: --user-name",
        ));
    };
    // A password on the command line can show in `ps`; a generated one is printed once.
    let generated = password.is_none();
    let password = password.unwrap_or_else(|| {
        Alphanumeric.sample_string(&mut rand::thread_rng(), GENERATED_PASSWORD_LEN)
    });
    let format = match globals.format() {
        Ok(f) => f,
        Err(msg) => return Ok(usage_error(&msg)),
    };
    let creds = match credentials::resolve(globals.data_dir.as_deref(), globals.profile.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(exit::FAILED);
        }
    };
    let client = Client::new(globals, creds)?;
    let url = format!("{}/appliance/v1/admin/users", globals.endpoint());
    let body = json!({ "UserName": user, "Password": password }).to_string();
    let failed = |kind: &str, message: &str| {
        eprintln!(
            "\nAn error occurred ({kind}) when calling the create-admin operation: {message}"
        );
        exit::FAILED
    };
    let (status, kind, text) = match client.send("POST", &url, body.into_bytes()).await {
        Ok(r) => r,
        Err(CallError::Other(e)) => {
            eprintln!("\n{e:#}");
            return Ok(exit::FAILED);
        }
        Err(CallError::Service { kind, message }) => return Ok(failed(&kind, &message)),
    };
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Ok(failed(
            &kind.unwrap_or_else(|| format!("HTTP{status}")),
            &message,
        ));
    }
    let mut out = json!({ "UserName": user });
    if generated {
        out["Password"] = Value::String(password);
    }
    print_result(globals, format, &out)
}
