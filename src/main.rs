//! `appliance`: parses the command line, sets up logging and shutdown, runs one role, and
//! reports any failure once.
#![forbid(unsafe_code)]

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use appliance::cli::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, cli.exit_with_parent);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appliance: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, cli.exit_with_parent)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("appliance: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, exit_with_parent: bool) -> anyhow::Result<u8> {
    let shutdown_on_signal = || {
        let token = shutdown_on_signal();
        if exit_with_parent {
            cancel_on_stdin_eof(token.clone());
        }
        token
    };
    match command {
        Command::Control(args) => {
            appliance::cli::control::run(args, shutdown_on_signal()).await?;
            Ok(0)
        }
        Command::Gateway(args) => {
            appliance::cli::proxy::run_gateway(args, shutdown_on_signal()).await?;
            Ok(0)
        }
        Command::Sidecar(args) => {
            appliance::cli::proxy::run_sidecar(args, shutdown_on_signal()).await?;
            Ok(0)
        }
        Command::Intercept(args) => {
            appliance::cli::intercept::run(&args)?;
            Ok(0)
        }
        Command::Ctl(args) => appliance::cli::ctl::run(args).await,
        Command::Demo(args) => {
            appliance::cli::demo::run(args, shutdown_on_signal()).await?;
            Ok(0)
        }
    }
}

/// Cancels `token` once stdin reaches end of file (or fails): the parent that holds its
/// write end has gone. A plain thread, not tokio's stdin, whose blocking read would keep
/// the runtime from shutting down.
fn cancel_on_stdin_eof(token: CancellationToken) {
    let spawned = std::thread::Builder::new()
        .name("exit-with-parent".into())
        .spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            // Cancel before logging: if the parent died, so did the reader of our stderr.
            token.cancel();
            tracing::info!("stdin closed: the parent process is gone; shutting down");
        });
    if let Err(e) = spawned {
        tracing::error!(%e, "cannot watch stdin for --exit-with-parent");
    }
}

/// One token for the whole process, cancelled by SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(%e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

fn init_tracing(format: LogFormat, exit_with_parent: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A child whose parent died has a stderr pipe nobody reads. Reporting that failure
        // would go to stderr again, which panics; losing the log lines is the lesser harm.
        .log_internal_errors(!exit_with_parent);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
