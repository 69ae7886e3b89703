//! The appliance's own `ctl` commands, beyond App Mesh's 38 operations.

use super::Globals;

/// (name, one-line description), for `appliance ctl help`.
pub const COMMANDS: &[(&str, &str)] = &[];

/// Runs an appliance command; `None` if `command` is not one.
pub async fn run(
    _globals: &Globals,
    _command: &str,
    _args: &[String],
) -> anyhow::Result<Option<u8>> {
    Ok(None)
}
