//! The admin page's users: `appliance ctl create-admin --user-name U [--password P]`,
//! `list-admins`, `delete-admin --user-name U` and `set-admin-password --user-name U
//! [--password P]`. They go through the API (`/appliance/v1/admin/users`, signed with the
//! caller's keys), since the running control plane holds the store open; the control plane
//! hashes passwords (Argon2id) before they are stored.

use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};

use super::request::{CallError, Client};
use super::{credentials, exit, print_result, usage_error, Globals};

/// Length of a generated password: ~143 bits from [A-Za-z0-9], beyond any offline guessing.
const GENERATED_PASSWORD_LEN: usize = 24;

/// For `appliance ctl help`.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "create-admin",
        "--user-name U [--password P]: a sign-in for the admin page (a password is generated if none is given)",
    ),
    ("list-admins", "the admin page's users and when each was made"),
    (
        "delete-admin",
        "--user-name U: removes the user and ends its sessions",
    ),
    (
        "set-admin-password",
        "--user-name U [--password P]: a new password (generated if none is given); its sessions end",
    ),
];

/// Runs `command` if it is one of `COMMANDS`.
pub async fn run(globals: &Globals, command: &str, args: &[String]) -> anyhow::Result<Option<u8>> {
    let code = match command {
        "create-admin" => create_admin(globals, args, false).await?,
        "set-admin-password" => create_admin(globals, args, true).await?,
        "list-admins" => {
            if let Some(arg) = args.first() {
                return Ok(Some(usage_error(&format!("Unknown options: {arg}"))));
            }
            let url = format!("{}/appliance/v1/admin/users", globals.endpoint());
            match send(globals, command, "GET", &url, Vec::new()).await? {
                Ok(out) => print_output(globals, &out)?,
                Err(code) => code,
            }
        }
        "delete-admin" => {
            let user = match user_flag(args) {
                Ok(u) => u,
                Err(code) => return Ok(Some(code)),
            };
            let url = format!(
                "{}/appliance/v1/admin/users/{}",
                globals.endpoint(),
                encode(&user)
            );
            match send(globals, command, "DELETE", &url, Vec::new()).await? {
                Ok(out) => print_output(globals, &out)?,
                Err(code) => code,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// A user name as one URL path segment.
fn encode(user: &str) -> String {
    percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn user_flag(args: &[String]) -> Result<String, u8> {
    match args {
        [flag, user] if flag == "--user-name" => Ok(user.clone()),
        [flag] if flag == "--user-name" => {
            Err(usage_error("argument --user-name: expected one argument"))
        }
        [] => Err(usage_error(
            "the following arguments are required: --user-name",
        )),
        [other, ..] => Err(usage_error(&format!("Unknown options: {other}"))),
    }
}

fn print_output(globals: &Globals, out: &Value) -> anyhow::Result<u8> {
    let format = match globals.format() {
        Ok(f) => f,
        Err(msg) => return Ok(usage_error(&msg)),
    };
    print_result(globals, format, out)
}

/// Sends one signed call; `Err(exit code)` after printing the error as the AWS CLI does.
async fn send(
    globals: &Globals,
    operation: &str,
    method: &str,
    url: &str,
    body: Vec<u8>,
) -> anyhow::Result<Result<Value, u8>> {
    let creds = match credentials::resolve(globals.data_dir.as_deref(), globals.profile.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(Err(exit::FAILED));
        }
    };
    let client = Client::new(globals, creds)?;
    let failed = |kind: &str, message: &str| {
        eprintln!("\nAn error occurred ({kind}) when calling the {operation} operation: {message}");
        exit::FAILED
    };
    let (status, kind, text) = match client.send(method, url, body).await {
        Ok(r) => r,
        Err(CallError::Other(e)) => {
            eprintln!("\n{e:#}");
            return Ok(Err(exit::FAILED));
        }
        Err(CallError::Service { kind, message }) => return Ok(Err(failed(&kind, &message))),
    };
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Ok(Err(failed(
            &kind.unwrap_or_else(|| format!("HTTP{status}")),
            &message,
        )));
    }
    Ok(Ok(serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `create-admin`, or with `existing` `set-admin-password`: the same flags and output.
async fn create_admin(globals: &Globals, args: &[String], existing: bool) -> anyhow::Result<u8> {
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
    let (method, url, operation) = if existing {
        (
            "PUT",
            format!(
                "{}/appliance/v1/admin/users/{}/password",
                globals.endpoint(),
                encode(&user)
            ),
            "set-admin-password",
        )
    } else {
        (
            "POST",
            format!("{}/appliance/v1/admin/users", globals.endpoint()),
            "create-admin",
        )
    };
    let body = if existing {
        json!({ "Password": password })
    } else {
        json!({ "UserName": user, "Password": password })
    };
    if let Err(code) = send(
        globals,
        operation,
        method,
        &url,
        body.to_string().into_bytes(),
    )
    .await?
    {
        return Ok(code);
    }
    let mut out = json!({ "UserName": user });
    if generated {
        out["Password"] = Value::String(password);
    }
    print_output(globals, &out)
}
