//! `appliance demo`: App Mesh's ingress walkthrough (colorteller) on this machine, TLS
//! everywhere. A control plane, four sidecars and a gateway run as child processes of this
//! same binary, enrolled over QUIC with join tokens exactly as on real hosts; the four
//! colorteller apps run inside the demo's own process.

mod children;
mod colorteller;
mod mesh;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::ca::private;
use crate::cli::ctl::api::Api;
use children::Children;
use mesh::{node_name, COLORS, GATEWAY, MESH};

/// The gateway's default address: HTTPS, clear of the control plane's 7070 and 7443.
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8443";
/// The demo control plane's API and admin page, beside the default control plane's 7070.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7080";
/// How long the whole mesh gets to answer through the gateway before the demo gives up.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long one child gets to log its `listening on` lines.
const LISTEN_WITHIN: Duration = Duration::from_secs(60);
/// Join tokens are only needed for the first connection; a short life limits a leaked one.
const TOKEN_TTL_SECONDS: u64 = 600;
/// The admin page's user in the demo.
const ADMIN_USER: &str = "demo";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the control plane's store and CA, the proxies' state, the CA bundle and every
    /// process's log go. Default: `appliance-demo` in the system's temporary directory.
    /// A second run on the same directory reuses the CA and updates the mesh.
    #[arg(long, env = "APPLIANCE_DEMO_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The gateway's HTTPS address (the walkthrough's NLB).
    #[arg(long, default_value = DEFAULT_GATEWAY_LISTEN)]
    pub gateway_listen: SocketAddr,
    /// The control plane's API and admin page.
    #[arg(long, default_value = DEFAULT_API_LISTEN)]
    pub api_listen: SocketAddr,
    /// Lifetime of the proxies' certificates, in seconds (renewed at two thirds). Short
    /// values show renewal under traffic.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=7_776_000))]
    pub leaf_ttl: u64,
}

pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("appliance-demo"));
    // The directory holds the CA's keys, the API credentials and the admin password, and its
    // default is under a shared /tmp: owner-only, and never someone else's or a link.
    private::open_private_dir(&dir).context("the demo directory")?;
    let proxies_dir = dir.join("proxies");
    private::refuse_link(&proxies_dir)?;
    // Proxies enrol afresh each run, with this run's tokens; their old state is moot.
    match std::fs::remove_dir_all(&proxies_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("clearing {}", proxies_dir.display())),
    }
    private::open_private_dir(&proxies_dir)?;
    let mut children = Children::new(&dir.join("logs"))?;
    let apps = CancellationToken::new();
    let result = tokio::select! {
        r = start_and_serve(&args, &dir, &mut children, &apps, &shutdown) => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    say("\nstopping the demo's processes...");
    children.stop().await;
    apps.cancel();
    say("stopped.");
    result
}

/// Everything the demo prints once the mesh answers.
struct Started {
    gateway: SocketAddr,
    api: String,
    bundle: PathBuf,
    credentials: PathBuf,
    admin_password: Option<String>,
}

async fn start_and_serve(
    args: &DemoArgs,
    dir: &Path,
    children: &mut Children,
    apps: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let control_dir = dir.join("control");
    let control = children.spawn(
        "control",
        &strings(&[
            "control",
            "--data-dir",
            &control_dir.to_string_lossy(),
            "--api-listen",
            &args.api_listen.to_string(),
            "--sync-listen",
            "127.0.0.1:0",
            "--leaf-ttl",
            &args.leaf_ttl.to_string(),
        ]),
        &[],
    )?;
    let api_addr = children
        .wait_listening(control, "api", LISTEN_WITHIN)
        .await?;
    let sync = children
        .wait_listening(control, "sync", LISTEN_WITHIN)
        .await?;
    let endpoint = format!("http://{api_addr}");
    let api = Api::for_data_dir(&endpoint, &control_dir)?;

    say(&format!(
        "creating the walkthrough's mesh {MESH} (TLS form) through the App Mesh API..."
    ));
    mesh::create(&api)
        .await
        .context("creating the walkthrough's mesh")?;
    let admin_password = admin_user(&api, dir).await;
    let bundle_pem = match api
        .call("GET", "/appliance/v1/certificate-authority/bundle", None)
        .await
        .context("getting the CA bundle")?
    {
        Value::String(pem) => pem,
        other => anyhow::bail!("the CA bundle is not PEM text: {other}"),
    };
    let bundle = dir.join("ca-bundle.pem");
    // Public, but written afresh: never through a link planted in its place.
    private::write_fresh(&bundle, bundle_pem.as_bytes(), 0o644)?;

    say("starting four colorteller apps, four sidecars and the gateway...");
    let mut sidecars = Vec::new();
    for color in COLORS {
        let app = colorteller::spawn(color, apps.clone()).await?;
        let node = node_name(color);
        let identity = format!("mesh/{MESH}/virtualNode/{node}");
        let token = join_token(&api, &identity).await?;
        // The sidecar advertises --listen as its node's endpoint, so it must be a real port.
        let listen = free_port()?;
        let id = children.spawn(
            &format!("sidecar-{color}"),
            &strings(&[
                "sidecar",
                "--control",
                &sync,
                "--state-dir",
                &dir.join("proxies").join(&node).to_string_lossy(),
                "--app",
                &app.to_string(),
                "--listen",
                &listen.to_string(),
                "--egress-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ]),
            &[
                ("APPMESH_VIRTUAL_NODE_NAME", &identity),
                ("APPLIANCE_TOKEN", &token),
            ],
        )?;
        sidecars.push(id);
    }
    let identity = format!("mesh/{MESH}/virtualGateway/{GATEWAY}");
    let token = join_token(&api, &identity).await?;
    let gateway = children.spawn(
        "gateway",
        &strings(&[
            "gateway",
            "--control",
            &sync,
            "--state-dir",
            &dir.join("proxies").join(GATEWAY).to_string_lossy(),
            "--listen",
            &args.gateway_listen.to_string(),
            "--admin-listen",
            "127.0.0.1:0",
        ]),
        &[
            ("APPMESH_VIRTUAL_NODE_NAME", &identity),
            ("APPLIANCE_TOKEN", &token),
        ],
    )?;
    for id in sidecars {
        children
            .wait_listening(id, "sidecar-inbound", LISTEN_WITHIN)
            .await?;
    }
    let gateway_addr: SocketAddr = children
        .wait_listening(gateway, "gateway", LISTEN_WITHIN)
        .await?
        .parse()
        .context("the gateway's logged address")?;
    wait_for_all_colors(gateway_addr, &bundle_pem).await?;

    print_started(
        &Started {
            gateway: gateway_addr,
            api: endpoint,
            bundle,
            credentials: control_dir.join(crate::api::CREDENTIALS_FILE),
            admin_password,
        },
        &control_dir,
        &children.pids(),
    );

    // Serve until Ctrl-C; a child that dies ends the demo rather than leaving it half up.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if let Some((name, status)) = children.exited() {
                    anyhow::bail!("{name} exited ({status}); see {}", dir.join("logs").join(format!("{name}.log")).display());
                }
            }
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A free port on 127.0.0.1 for a sidecar, which must be told its port before it binds (it
/// advertises `--listen` as its node's endpoint before it has a config). The port comes from
/// below the kernel's ephemeral range, which `bind(0)` and outgoing connections never take, so
/// nothing else on the machine grabs it between this check and the sidecar's bind.
fn free_port() -> anyhow::Result<SocketAddr> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let base = low.saturating_sub(10_000).max(1024);
    // Start at a random place so two demos on one machine rarely probe the same ports.
    let start = rand::random::<u16>() % (low - base).max(1);
    for i in 0..(low - base) {
        let port = base + (start + i) % (low - base);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1 between {base} and {low}")
}

async fn join_token(api: &Api, identity: &str) -> anyhow::Result<String> {
    let body = json!({"Identity": identity, "TtlSeconds": TOKEN_TTL_SECONDS, "SingleUse": true});
    let v = api
        .call("POST", "/appliance/v1/join-tokens", Some(&body))
        .await
        .with_context(|| format!("creating a join token for {identity}"))?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the join token answer has no token: {v}"))
}

/// Creates the admin page's user with a generated password, kept in `DIR/admin-password`
/// (mode 0600) so a second run can show it again. `None` if neither worked.
async fn admin_user(api: &Api, dir: &Path) -> Option<String> {
    use rand::distributions::{Alphanumeric, DistString};
    let file = dir.join("admin-password");
    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 20);
    let body = json!({"UserName": ADMIN_USER, "Password": password});
    match api
        .call("POST", "/appliance/v1/admin/users", Some(&body))
        .await
    {
        Ok(_) => {
            if let Err(e) = write_private(&file, &password) {
                tracing::warn!(file = %file.display(), "cannot keep the admin password: {e:#}");
            }
            Some(password)
        }
        Err(e) => match private::refuse_link(&file).map(|()| std::fs::read_to_string(&file)) {
            Ok(Ok(saved)) => Some(saved.trim().to_owned()),
            _ => {
                tracing::warn!(%e, "cannot create the admin page's user");
                None
            }
        },
    }
}

/// A secret, written 0600 with `O_EXCL`: a file planted in its place (a link, or another
/// user's file) is refused rather than written through.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    private::write_fresh(path, format!("{text}\n").as_bytes(), 0o600)?;
    Ok(())
}

/// Polls the gateway over TLS, trusting only the appliance's CA and checking the name
/// `localhost`, until both routes have answered with all four colours: every sidecar has
/// then enrolled, registered its endpoint and served through STRICT TLS.
async fn wait_for_all_colors(gateway: SocketAddr, bundle_pem: &str) -> anyhow::Result<()> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .tls_built_in_root_certs(false)
        .resolve("localhost", gateway);
    for cert in reqwest::Certificate::from_pem_bundle(bundle_pem.as_bytes())
        .context("parsing the CA bundle")?
    {
        builder = builder.add_root_certificate(cert);
    }
    let client = builder.build().context("building an HTTPS client")?;
    let port = gateway.port();
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut seen = std::collections::BTreeSet::new();
    let mut last = String::from("no answer yet");
    while seen.len() < COLORS.len() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the mesh did not answer with every colour within {READY_WITHIN:?} (seen {seen:?}; last: {last})");
        }
        for path in ["/color1/tell", "/color2/tell"] {
            let url = format!("https://localhost:{port}{path}");
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    let body = r.text().await.unwrap_or_default();
                    if COLORS.contains(&body.as_str()) {
                        seen.insert(body);
                    }
                }
                Ok(r) => last = format!("{url}: {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The demo's report, in one write. Written with `say`: a closed stdout (the terminal went
/// away) must not stop the demo from cleaning up.
fn print_started(s: &Started, control_dir: &Path, pids: &[(String, u32)]) {
    use std::fmt::Write;
    let url = format!("https://localhost:{}", s.gateway.port());
    let bundle = s.bundle.display();
    let creds = s.credentials.display();
    let api = &s.api;
    let pids: Vec<String> = pids.iter().map(|(n, p)| format!("{n}={p}")).collect();
    let logs = control_dir.with_file_name("logs");
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        o,
        "\nThe App Mesh ingress walkthrough is running, STRICT TLS on every hop.\n"
    );
    let _ = writeln!(o, "  gateway URL   {url}");
    let _ = writeln!(o, "  CA bundle     {bundle}");
    let _ = writeln!(o, "  admin page    {api}/");
    if let Some(p) = &s.admin_password {
        let _ = writeln!(o, "  admin login   {ADMIN_USER} / {p}");
    }
    let _ = writeln!(o, "  credentials   {creds}");
    let _ = writeln!(o, "  logs          {}", logs.display());
    let _ = writeln!(o, "  processes     {}", pids.join(" "));
    let _ = writeln!(o, "\nTry:");
    let _ = writeln!(
        o,
        "  curl --cacert {bundle} {url}/color1/tell    # white or blue"
    );
    let _ = writeln!(
        o,
        "  curl --cacert {bundle} {url}/color2/tell    # black or red"
    );
    let _ = writeln!(
        o,
        "  # all of /color1 to white, with the AWS CLI against the appliance:"
    );
    let _ = writeln!(
        o,
        "  AWS_SHARED_CREDENTIALS_FILE={creds} AWS_DEFAULT_REGION=us-east-1 \\"
    );
    let _ = writeln!(
        o,
        "    aws appmesh update-route --endpoint-url {api} --mesh-name {MESH} \\"
    );
    let _ = writeln!(
        o,
        "    --virtual-router-name colorteller-vr-1 --route-name colorteller-route-1 \\"
    );
    let _ = writeln!(o, "    --spec '{WHITE_ONLY}'");
    let _ = writeln!(
        o,
        "  appliance ctl --endpoint-url {api} --data-dir {} list-proxies",
        control_dir.display()
    );
    let _ = writeln!(o, "\nCtrl-C stops everything the demo started.");
    say(o.trim_end());
}

/// `/color1`'s route with weights 100:0, as the walkthrough's README changes it.
const WHITE_ONLY: &str = r#"{"httpRoute":{"match":{"prefix":"/tell"},"action":{"weightedTargets":[{"virtualNode":"colorteller-white-vn","weight":100},{"virtualNode":"colorteller-blue-vn","weight":0}]}}}"#;

/// One line (or block) on stdout; an error (nobody reads it any more) is ignored.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
