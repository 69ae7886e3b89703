//! The control plane's side: accepts proxies over QUIC, enrols them with join tokens,
//! renews their certificates, and pushes each identity's compiled config when (and only
//! when) it changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::frame::{self, FrameError, ToControl, ToProxy, MAX_TO_CONTROL};
use super::registry::{Desired, Registry, SessionId};
use super::tls::{self, SERVER_NAME};
use crate::ca::Ca;
use crate::compile::{compile, Snapshot};
use crate::model::{Identity, Spec};
use crate::store::Store;

/// A peer that has not sent its first frame by then is dropped.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Changes arriving this close together are compiled and pushed as one.
const DEBOUNCE: Duration = Duration::from_millis(10);

/// QUIC application close codes.
const CLOSE_OK: u32 = 0;
const CLOSE_PROTOCOL: u32 = 1;
const CLOSE_REFUSED: u32 = 2;

pub struct Context {
    pub store: Store,
    pub ca: Arc<Ca>,
    pub registry: Arc<Registry>,
    /// Last config version handed out; see `next_version`.
    version: AtomicU64,
}

impl Context {
    pub fn new(store: Store, ca: Arc<Ca>, registry: Arc<Registry>) -> Arc<Context> {
        Arc::new(Context {
            store,
            ca,
            registry,
            version: AtomicU64::new(0),
        })
    }

    /// Config versions only grow, across restarts too: each is the larger of the previous
    /// plus one and the current time in milliseconds.
    fn next_version(&self) -> u64 {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let now = u64::try_from(now).unwrap_or(0);
        let mut prev = self.version.load(Ordering::Relaxed);
        loop {
            let next = (prev + 1).max(now);
            match self
                .version
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    fn trust_domain(&self) -> &str {
        &self.ca.config().trust_domain
    }
}

/// The sync server's QUIC config: a fresh certificate for `SERVER_NAME`, with the roots
/// appended so a joining proxy can find the one its token pins.
fn server_config(ca: &Ca) -> anyhow::Result<quinn::ServerConfig> {
    let (chain, key) =
        ca.issue_server_cert(&[SERVER_NAME.to_owned()], &[], OffsetDateTime::now_utc())?;
    let mut chain = chain.to_string();
    let bundle = ca.bundle_pem();
    chain.push_str(&bundle);
    Ok(tls::server_config(&chain, &key, &ca.root_certs())?)
}

pub fn bind(addr: SocketAddr, ca: &Ca) -> anyhow::Result<quinn::Endpoint> {
    let config = server_config(ca)?;
    let socket = udp_socket(addr)
        .map_err(|e| anyhow::anyhow!("binding the sync listener to {addr}/udp: {e}"))?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| anyhow::anyhow!("the sync listener needs a tokio runtime"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )
    .map_err(|e| anyhow::anyhow!("starting the sync listener on {addr}/udp: {e}"))
}

/// Socket buffers for a push to thousands of proxies at once: one config change sends a
/// burst of packets, and with the kernel's default 208 KB the burst overflows, packets are
/// dropped and loss recovery adds hundreds of milliseconds. The kernel caps the size at
/// `net.core.rmem_max` / `wmem_max`.
pub const UDP_BUFFER: usize = 4 * 1024 * 1024;

pub fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the sync socket's receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the sync socket's send buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Runs the sync server on `endpoint` until `shutdown`.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<Context>, shutdown: CancellationToken) {
    tokio::spawn(push_loop(ctx.clone(), shutdown.clone()));
    tokio::spawn(refresh_server_config(
        endpoint.clone(),
        ctx.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(sweep_loop(ctx.clone(), shutdown.clone()));
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let (ctx, stop) = (ctx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => handle(conn, ctx, stop).await,
                Err(e) => tracing::debug!(%remote, error = %e, "sync handshake failed"),
            }
        });
    }
    endpoint.close(CLOSE_OK.into(), b"control plane shutting down");
    // Give the close frames a moment to leave, so proxies know at once.
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

/// Re-issues the server certificate when the CA changes and well before it expires.
async fn refresh_server_config(
    endpoint: quinn::Endpoint,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let mut changes = ctx.ca.subscribe();
    let third: time::Duration = ctx.ca.config().leaf_ttl / 3;
    let every = Duration::try_from(third).unwrap_or(Duration::from_secs(3600));
    let every = every.max(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(every) => {}
        }
        match server_config(&ctx.ca) {
            Ok(c) => endpoint.set_server_config(Some(c)),
            Err(e) => tracing::error!(error = %e, "renewing the sync server certificate failed"),
        }
    }
}

async fn sweep_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => { ctx.registry.sweep(Instant::now()); }
        }
    }
}

/// Recompiles connected identities whenever the store, the registry or the CA changes, and
/// publishes the configs whose content differs from what their proxies have.
async fn push_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut store_changes = ctx.store.subscribe();
    // A revocation changes every proxy's config (its revoked peers).
    let mut ca_changes = ctx.ca.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = store_changes.changed() => if r.is_err() { return },
            r = ca_changes.changed() => if r.is_err() { return },
            _ = ctx.registry.changed.notified() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        store_changes.mark_unchanged();
        let c = ctx.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || recompute(&c)).await {
            tracing::error!(error = %e, "config compile task failed");
        }
    }
}

fn recompute(ctx: &Context) {
    let identities = ctx.registry.identities();
    let mut by_mesh: std::collections::BTreeMap<String, Vec<Identity>> = Default::default();
    for i in identities {
        by_mesh.entry(i.mesh.to_string()).or_default().push(i);
    }
    for (mesh, ids) in by_mesh {
        let snapshot = match load_snapshot(&ctx.store, &ids[0]) {
            Ok(s) => s,
            Err(e) => {
                for id in &ids {
                    publish_error(ctx, id, e.clone());
                }
                continue;
            }
        };
        let endpoints = ctx.registry.endpoints(&mesh);
        // Every proxy refuses revoked peers' certificates in its handshakes.
        let mut revoked: Vec<String> = ctx.ca.revoked().iter().map(|i| i.to_string()).collect();
        revoked.sort();
        for id in &ids {
            match compile(&snapshot, id, &endpoints, 0) {
                Ok(mut config) => {
                    config.revoked_peers = revoked.clone();
                    let content = serde_json::to_string(&config).unwrap_or_default();
                    let current = ctx.registry.desired(id).unwrap_or_default();
                    if *current.content == content {
                        if current.error.is_some() {
                            ctx.registry.publish(
                                id,
                                Desired {
                                    error: None,
                                    ..current
                                },
                            );
                        }
                        continue;
                    }
                    config.version = ctx.next_version();
                    let json = serde_json::to_string(&config).unwrap_or_default();
                    let bytes = frame::encode(ToProxy::Config {
                        version: config.version,
                        config_json: json,
                    });
                    tracing::info!(identity = %id, version = config.version, "config changed; pushing");
                    ctx.registry.publish(
                        id,
                        Desired {
                            version: config.version,
                            frame: Some(Arc::new(bytes)),
                            content: Arc::new(content),
                            error: None,
                        },
                    );
                }
                Err(e) => publish_error(ctx, id, e.to_string()),
            }
        }
    }
}

fn publish_error(ctx: &Context, id: &Identity, error: String) {
    let current = ctx.registry.desired(id).unwrap_or_default();
    if current.error.as_deref() != Some(error.as_str()) {
        tracing::warn!(identity = %id, %error, "cannot compile this proxy's config; it keeps its last one");
    }
    ctx.registry.publish(
        id,
        Desired {
            error: Some(error),
            ..current
        },
    );
}

fn load_snapshot(store: &Store, identity: &Identity) -> Result<Snapshot, String> {
    let records = store
        .mesh_snapshot(&identity.mesh)
        .map_err(|e| e.to_string())?;
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        let spec = Spec::parse(r.id.kind, Some(&r.row.spec))
            .map_err(|e| format!("stored {} no longer parses: {e}", r.id))?;
        items.push((r.id, spec));
    }
    Ok(Snapshot::new(&identity.mesh, items))
}

async fn handle(conn: quinn::Connection, ctx: Arc<Context>, shutdown: CancellationToken) {
    let remote = conn.remote_address();
    let peer = tls::peer_cert(&conn, ctx.trust_domain());
    let span = tracing::info_span!("sync", %remote, identity = tracing::field::Empty);
    async move {
        let first = tokio::time::timeout(FIRST_FRAME_TIMEOUT, async {
            let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
            let first = frame::read::<ToControl, _>(&mut recv, MAX_TO_CONTROL)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((send, recv, first))
        })
        .await;
        let (mut send, recv, first) = match first {
            Ok(Ok((s, r, Some(f)))) => (s, r, f),
            Ok(Ok((_, _, None))) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bad first frame; closing");
                conn.close(CLOSE_PROTOCOL.into(), e.as_bytes());
                return;
            }
            Err(_) => {
                conn.close(CLOSE_PROTOCOL.into(), b"no first frame in time");
                return;
            }
        };
        match first {
            ToControl::Enrol {
                token,
                identity,
                csr_pem,
            } => {
                let reply = match super::issue::enrol(&ctx, &token, &identity, &csr_pem).await {
                    Ok(m) => {
                        tracing::info!(identity = ?identity, "proxy enrolled");
                        m
                    }
                    Err(reason) => {
                        tracing::warn!(identity = ?identity, reason = ?reason, "enrolment refused");
                        ToProxy::Refused { reason }
                    }
                };
                let _ = frame::write(&mut send, &frame::encode(reply)).await;
                let _ = send.finish();
                // The proxy closes once it has the answer.
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            }
            ToControl::Hello {
                identity,
                advertise,
                healthy,
                running_version,
                attributes,
            } => {
                let peer = match peer {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => return refuse(&conn, &mut send, e).await,
                    None => {
                        return refuse(
                            &conn,
                            &mut send,
                            "no client certificate: enrol with a join token first".into(),
                        )
                        .await
                    }
                };
                tracing::Span::current()
                    .record("identity", tracing::field::display(&peer.identity));
                if identity != peer.identity.to_string() {
                    let reason = format!(
                        "the certificate is for {}, the proxy says it is {identity}",
                        peer.identity
                    );
                    return refuse(&conn, &mut send, reason).await;
                }
                if ctx.ca.is_revoked(&peer.identity) {
                    return refuse(&conn, &mut send, format!("{} is revoked", peer.identity)).await;
                }
                let attributes = match crate::compile::attribute_map(attributes) {
                    Ok(a) => a,
                    Err(e) => {
                        let reason = format!("attribute {e}");
                        return refuse(&conn, &mut send, reason).await;
                    }
                };
                let advertise = advertise.map(|address| crate::compile::Registered {
                    address,
                    attributes,
                });
                let (id, desired) = ctx.registry.register(
                    &peer.identity,
                    remote.to_string(),
                    advertise,
                    healthy,
                    Some(peer.not_after),
                );
                tracing::info!("proxy connected");
                let draining = session(
                    &conn,
                    &ctx,
                    id,
                    &peer.identity,
                    running_version,
                    desired,
                    send,
                    recv,
                    shutdown,
                )
                .await;
                ctx.registry.unregister(id, draining);
                tracing::info!("proxy disconnected");
            }
            other => {
                let reason = format!(
                    "the first frame must be Enrol or Hello, not {}",
                    variant(&other)
                );
                refuse(&conn, &mut send, reason).await
            }
        }
    }
    .instrument(span)
    .await
}

fn variant(m: &ToControl) -> &'static str {
    match m {
        ToControl::Enrol { .. } => "Enrol",
        ToControl::Hello { .. } => "Hello",
        ToControl::Ack { .. } => "Ack",
        ToControl::Nack { .. } => "Nack",
        ToControl::Health { .. } => "Health",
        ToControl::Draining => "Draining",
        ToControl::Renew { .. } => "Renew",
        ToControl::Stats { .. } => "Stats",
    }
}

async fn refuse(conn: &quinn::Connection, send: &mut quinn::SendStream, reason: String) {
    tracing::warn!(%reason, "proxy refused");
    let _ = frame::write(
        send,
        &frame::encode(ToProxy::Refused {
            reason: reason.clone(),
        }),
    )
    .await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
}

/// The longest a draining sidecar is held while the proxies that route to it take its
/// endpoint out: bounded so a proxy that never acks cannot stall a shutdown.
pub const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// How often a held drain looks at the acks.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// One enrolled proxy's session. Returns whether the proxy said it was draining.
#[allow(clippy::too_many_arguments)]
async fn session(
    conn: &quinn::Connection,
    ctx: &Arc<Context>,
    id: SessionId,
    identity: &Identity,
    running_version: u64,
    mut desired: tokio::sync::watch::Receiver<Desired>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shutdown: CancellationToken,
) -> bool {
    // Reads run in their own task: a half-read frame must not be lost to a select.
    let (tx, mut frames) = mpsc::channel::<Result<ToControl, FrameError>>(8);
    let reader = tokio::spawn(async move {
        loop {
            let r = frame::read::<ToControl, _>(&mut recv, MAX_TO_CONTROL).await;
            let stop = !matches!(r, Ok(Some(_)));
            let item = match r {
                Ok(Some(m)) => Ok(m),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    let mut ca_changes = ctx.ca.subscribe();
    // The CA's change feed also fires for revocations, which change no bundle: only a new
    // bundle is worth every proxy's renewal.
    let mut bundle = ctx.ca.bundle_pem();
    let mut last_sent = running_version;
    let mut draining = false;
    // The config current at connect time goes out at once if the proxy runs another one.
    desired.mark_changed();
    let outcome: Result<(), String> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            r = desired.changed() => {
                if r.is_err() { break Ok(()); }
                let d = desired.borrow_and_update().clone();
                if let (Some(bytes), true) = (&d.frame, d.version != last_sent) {
                    if let Err(e) = frame::write(&mut send, bytes).await {
                        break Err(format!("sending config {}: {e}", d.version));
                    }
                    last_sent = d.version;
                    ctx.registry.sent(id, d.version);
                }
            }
            r = ca_changes.changed() => {
                if r.is_err() { break Ok(()); }
                if ctx.ca.is_revoked(identity) {
                    let reason = format!("{identity} was revoked");
                    let _ = frame::write(&mut send, &frame::encode(ToProxy::Refused { reason: reason.clone() })).await;
                    conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
                    break Err(reason);
                }
                let current = ctx.ca.bundle_pem();
                if current == bundle {
                    continue;
                }
                bundle = current.clone();
                let m = ToProxy::RenewNow { trust_bundle_pem: current };
                if let Err(e) = frame::write(&mut send, &frame::encode(m)).await {
                    break Err(format!("sending the new CA bundle: {e}"));
                }
            }
            f = frames.recv() => match f {
                None => break Ok(()),
                Some(Err(e)) => {
                    conn.close(CLOSE_PROTOCOL.into(), e.to_string().as_bytes());
                    break Err(format!("bad frame: {e}"));
                }
                Some(Ok(m)) => match m {
                    ToControl::Ack { version } => {
                        tracing::debug!(version, "config acked");
                        ctx.registry.acked(id, version);
                    }
                    ToControl::Nack { version, error } => {
                        tracing::warn!(version, error = ?error, "config nacked; the proxy stays on its previous config");
                        ctx.registry.nacked(id, version, error);
                    }
                    ToControl::Health { healthy } => ctx.registry.set_health(id, healthy),
                    ToControl::Draining => {
                        draining = true;
                        ctx.registry.draining(id);
                        // The sidecar keeps serving until this session closes: hold it until
                        // every other proxy runs a config without its endpoint (or the bound).
                        let start = tokio::time::Instant::now();
                        while !ctx.registry.drain_propagated(id) && start.elapsed() < DRAIN_WAIT {
                            tokio::time::sleep(DRAIN_POLL).await;
                        }
                        tracing::info!(waited_ms = start.elapsed().as_millis(), "drain propagated; closing the session");
                        conn.close(0u32.into(), b"drained");
                        break Ok(());
                    }
                    ToControl::Stats { targets } => ctx.registry.stats(id, targets),
                    ToControl::Renew { csr_pem } => {
                        match super::issue::renew(ctx, identity, csr_pem).await {
                            Ok((m, expiry)) => {
                                ctx.registry.certificate(id, expiry);
                                if let Err(e) = frame::write(&mut send, &frame::encode(m)).await {
                                    break Err(format!("sending the renewed certificate: {e}"));
                                }
                                tracing::info!("certificate renewed");
                            }
                            Err(reason) => {
                                let _ = frame::write(&mut send, &frame::encode(ToProxy::Refused { reason: reason.clone() })).await;
                                conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
                                break Err(reason);
                            }
                        }
                    }
                    other @ (ToControl::Enrol { .. } | ToControl::Hello { .. }) => {
                        let e = format!("{} in the middle of a session", variant(&other));
                        conn.close(CLOSE_PROTOCOL.into(), e.as_bytes());
                        break Err(e);
                    }
                },
            },
        }
    };
    reader.abort();
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "session ended");
    }
    draining
}
