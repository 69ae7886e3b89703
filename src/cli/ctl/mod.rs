//! `appliance ctl`: the `aws appmesh` command line, driven by App Mesh's own service model,
//! so every operation, flag and output shape matches the AWS CLI (v1). A script written for
//! `aws appmesh` works with `appliance ctl` in its place. This root dispatches a command line;
//! `operation` and `params` run the 38 modelled operations, `appliance_commands`, `admin` and
//! `import` the appliance's own commands, `output` prints results. Knows nothing of the
//! control plane's internals: it talks to it only over the signed API.

mod admin;
pub mod api;
mod appliance_commands;
mod credentials;
mod globals;
mod import;
mod operation;
mod output;
mod params;
mod request;

pub use credentials::{parse_profile, Credentials};
pub use globals::Globals;
pub use operation::{is_model_operation, kebab};
pub(crate) use output::print_result;

use crate::model::service_model::service_model;

/// Exit codes as the AWS CLI v1 uses them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command line could not be parsed (argparse's usage error).
    pub const USAGE: u8 = 2;
    /// The service refused the call, or a parameter, credential or connection problem.
    pub const FAILED: u8 = 255;
}

/// Default API endpoint: the control plane's default listen address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct CtlArgs {
    /// An `aws appmesh` operation in kebab-case (`create-virtual-node`, ...) or one of the
    /// appliance's own commands, with its flags; `appliance ctl help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// Runs one `ctl` command line; returns the process exit code.
pub async fn run(args: CtlArgs) -> anyhow::Result<u8> {
    let (globals, command, rest) = match globals::split_globals(&args.args) {
        Ok(parts) => parts,
        Err(msg) => return Ok(usage_error(&msg)),
    };
    let Some(command) = command else {
        print_help();
        return Ok(exit::USAGE);
    };
    if command == "help" {
        print_help();
        return Ok(exit::OK);
    }
    if let Some(op) = operation::operation_for(&command) {
        return operation::run(&globals, op, &rest).await;
    }
    if let Some(code) = admin::run(&globals, &command, &rest).await? {
        return Ok(code);
    }
    if command == import::ABOUT.0 {
        return import::run(&globals, &rest).await;
    }
    if let Some(code) = appliance_commands::run(&globals, &command, &rest).await? {
        return Ok(code);
    }
    Ok(usage_error(&format!("argument operation: Invalid choice '{command}', see `appliance ctl help` for the valid choices")))
}

pub(crate) fn usage_error(msg: &str) -> u8 {
    eprintln!("usage: appliance ctl [options] <operation> [parameters]\nTo see help text, you can run:\n\n  appliance ctl help\n  appliance ctl <operation> help\nappliance ctl: error: {msg}");
    exit::USAGE
}

fn print_help() {
    println!("appliance ctl: the `aws appmesh` commands against an appliance control plane.\n");
    println!("Global options: --endpoint-url URL (default {DEFAULT_ENDPOINT}), --region R, --output json|text,");
    println!("  --query JMESPATH, --no-paginate, --profile P, --data-dir DIR (credentials from DIR/credentials),");
    println!("  --ca-bundle PEM, --debug\n\nApp Mesh operations:");
    for name in service_model().operations.keys() {
        println!("  {}", kebab(name));
    }
    println!("\nappliance commands:");
    for (name, about) in appliance_commands::COMMANDS
        .iter()
        .chain(admin::COMMANDS)
        .chain([&import::ABOUT])
    {
        println!("  {name:<34} {about}");
    }
}
