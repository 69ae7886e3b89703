//! Options every command takes, wherever they stand on the command line, as in the AWS CLI.

use std::path::PathBuf;

use super::output::Format;
use super::DEFAULT_ENDPOINT;

/// Options every command takes, before or after the operation name, as in the AWS CLI.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub output: Option<String>,
    pub query: Option<String>,
    pub profile: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub no_paginate: bool,
    pub debug: bool,
}

impl Globals {
    pub fn endpoint(&self) -> String {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var("APPLIANCE_ENDPOINT_URL").ok())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned())
    }

    pub fn format(&self) -> Result<Format, String> {
        let name = self.output.clone().unwrap_or_else(|| "json".into());
        Format::parse(&name).ok_or_else(|| {
            format!("argument --output: Invalid choice '{name}', valid choices are: json, text")
        })
    }
}

const GLOBAL_WITH_VALUE: [&str; 7] = [
    "--endpoint-url",
    "--region",
    "--output",
    "--query",
    "--profile",
    "--ca-bundle",
    "--data-dir",
];

/// Pulls the global options out of the command line, wherever they stand.
pub(super) fn split_globals(
    args: &[String],
) -> Result<(Globals, Option<String>, Vec<String>), String> {
    let mut g = Globals::default();
    let mut command = None;
    let mut rest = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if GLOBAL_WITH_VALUE.contains(&flag) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("argument {flag}: expected one argument"))?,
            };
            match flag {
                "--endpoint-url" => g.endpoint_url = Some(value),
                "--region" => g.region = Some(value),
                "--output" => g.output = Some(value),
                "--query" => g.query = Some(value),
                "--profile" => g.profile = Some(value),
                "--ca-bundle" => g.ca_bundle = Some(PathBuf::from(value)),
                _ => g.data_dir = Some(PathBuf::from(value)),
            }
            continue;
        }
        match flag {
            "--no-paginate" => g.no_paginate = true,
            "--debug" => g.debug = true,
            "--no-cli-pager" | "--no-verify-ssl" => {}
            _ if command.is_none() && !arg.starts_with("--") => command = Some(arg.clone()),
            _ => rest.push(arg.clone()),
        }
    }
    Ok((g, command, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn global_options_are_found_before_and_after_the_operation() {
        let (g, cmd, rest) = split_globals(&args(
            "--output text list-meshes --endpoint-url http://x:1 --limit 5",
        ))
        .unwrap();
        assert_eq!(cmd.as_deref(), Some("list-meshes"));
        assert_eq!(g.output.as_deref(), Some("text"));
        assert_eq!(g.endpoint(), "http://x:1");
        assert_eq!(rest, args("--limit 5"));
    }
}
