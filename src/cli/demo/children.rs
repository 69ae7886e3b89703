//! The demo's child processes: this same binary in another role (`control`, `sidecar`,
//! `gateway`). Each child's log goes to `DIR/logs/<name>.log`, and its `listening on` lines
//! tell the demo its addresses.
//!
//! How nothing outlives the demo: every child runs with `--exit-with-parent`, which makes
//! it shut down cleanly when its stdin reaches end of file. The demo holds the write end of
//! each stdin pipe; the kernel closes it when the demo exits for any reason, SIGKILL
//! included. A clean stop closes the pipes first, waits for the children to drain, and
//! kills whatever is left after a deadline; dropping `Children` kills them outright.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long a child gets to stop after its stdin closes: a proxy's drain notice is 1.5 s.
const STOP_GRACE: Duration = Duration::from_secs(8);

pub struct Children {
    exe: PathBuf,
    log_dir: PathBuf,
    running: Vec<Running>,
}

struct Running {
    name: String,
    child: Child,
    /// Closing it is the child's signal to stop.
    stdin: Option<ChildStdin>,
    /// (role, address) from each `listening on` line, as they are logged.
    listening: mpsc::UnboundedReceiver<(String, String)>,
    seen: HashMap<String, String>,
}

/// Which child, as `spawn` returned it.
#[derive(Debug, Clone, Copy)]
pub struct ChildId(usize);

impl Children {
    pub fn new(log_dir: &Path) -> anyhow::Result<Children> {
        crate::ca::private::open_private_dir(log_dir)?;
        let exe = std::env::current_exe().context("finding this program's path")?;
        Ok(Children {
            exe,
            log_dir: log_dir.to_path_buf(),
            running: Vec::new(),
        })
    }

    /// Starts `appliance --exit-with-parent <args>` with extra environment.
    pub fn spawn(
        &mut self,
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<ChildId> {
        let log_path = self.log_dir.join(format!("{name}.log"));
        // Created afresh (`O_EXCL`), so a link planted as the log is never written through.
        let mut log = crate::ca::private::create_fresh(&log_path, 0o600)?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--exit-with-parent")
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .env("APPLIANCE_LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", self.exe.display()))?;
        let stdin = child.stdin.take();
        let stderr = child
            .stderr
            .take()
            .context("the child's stderr is not piped")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let who = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Err(e) = writeln!(log, "{line}") {
                    tracing::warn!(child = %who, %e, "cannot write the child's log");
                }
                if let Some(found) = listening(&line) {
                    let _ = tx.send(found);
                }
            }
        });
        tracing::debug!(child = name, pid = child.id(), log = %log_path.display(), "started");
        self.running.push(Running {
            name: name.to_owned(),
            child,
            stdin,
            listening: rx,
            seen: HashMap::new(),
        });
        Ok(ChildId(self.running.len() - 1))
    }

    /// The address the child logged for `role` (`api`, `sync`, `gateway`, ...).
    pub async fn wait_listening(
        &mut self,
        id: ChildId,
        role: &str,
        within: Duration,
    ) -> anyhow::Result<String> {
        let log = self.log_path(id);
        let r = self
            .running
            .get_mut(id.0)
            .context("no such child (a bug in the demo)")?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(addr) = r.seen.get(role) {
                return Ok(addr.clone());
            }
            match tokio::time::timeout_at(deadline, r.listening.recv()).await {
                Ok(Some((role, addr))) => {
                    r.seen.insert(role, addr);
                }
                Ok(None) => anyhow::bail!(
                    "{} exited before listening ({role}); see {}",
                    r.name,
                    log.display()
                ),
                Err(_) => anyhow::bail!(
                    "{} did not start listening ({role}) within {within:?}; see {}",
                    r.name,
                    log.display()
                ),
            }
        }
    }

    /// (name, pid) of every child still running.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.running
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.child.id()?)))
            .collect()
    }

    /// A child that has exited, if any: (name, how it ended).
    pub fn exited(&mut self) -> Option<(String, String)> {
        self.running
            .iter_mut()
            .find_map(|r| match r.child.try_wait() {
                Ok(Some(status)) => Some((r.name.clone(), status.to_string())),
                Ok(None) | Err(_) => None,
            })
    }

    /// Stops every child: those started after the first (the proxies) together, since each
    /// drains for a while, then the first (the control plane they report to). One that does
    /// not stop in time is killed.
    pub async fn stop(&mut self) {
        if let Some((first, rest)) = self.running.split_first_mut() {
            for r in rest.iter_mut() {
                r.stdin.take();
            }
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            for r in rest.iter_mut() {
                wait_or_kill(r, deadline).await;
            }
            first.stdin.take();
            wait_or_kill(first, tokio::time::Instant::now() + STOP_GRACE).await;
        }
        self.running.clear();
    }

    fn log_path(&self, id: ChildId) -> PathBuf {
        let name = self.running.get(id.0).map_or("?", |r| r.name.as_str());
        self.log_dir.join(format!("{name}.log"))
    }
}

async fn wait_or_kill(r: &mut Running, deadline: tokio::time::Instant) {
    match tokio::time::timeout_at(deadline, r.child.wait()).await {
        Ok(Ok(status)) => tracing::debug!(child = %r.name, %status, "stopped"),
        Ok(Err(e)) => tracing::warn!(child = %r.name, %e, "cannot wait for it"),
        Err(_) => {
            tracing::warn!(child = %r.name, "did not stop in time; killing it");
            let _ = r.child.kill().await;
        }
    }
}

/// `(role, addr)` from a `listening on ADDR ... role="ROLE"` log line.
fn listening(line: &str) -> Option<(String, String)> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?.trim_end_matches("/udp");
    let role = line.split("role=\"").nth(1)?.split('"').next()?;
    Some((role.to_owned(), addr.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::listening;

    #[test]
    fn listening_lines_give_role_and_address() {
        let line = r#"2025-01-01T00:00:00Z  INFO appliance::cli::control: listening on 127.0.0.1:5000/udp role="sync" alpn="appliance-sync/1""#;
        assert_eq!(
            listening(line),
            Some(("sync".into(), "127.0.0.1:5000".into()))
        );
        assert_eq!(listening("INFO started"), None);
    }
}
