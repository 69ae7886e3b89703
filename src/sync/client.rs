//! The proxy's side: enrols once with a join token, then keeps a session with the control
//! plane, applying each config it is sent (through `Event::Config`, answered ack or nack),
//! renewing its certificate at two thirds of its life, and reconnecting with jittered
//! backoff whenever the control plane is away. What it applied is cached, so it can start
//! again without the control plane.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::cache::{Credentials, StateDir};
use super::frame::{self, ToControl, ToProxy, MAX_TO_PROXY};
use super::tls::{self, SERVER_NAME};
use super::token::JoinToken;
use crate::compile::ProxyConfig;
use crate::model::Identity;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const STATS_EVERY: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

pub struct ClientOptions {
    /// `host:port` of the control plane's sync listener.
    pub control: String,
    pub identity: Identity,
    /// Where peers reach this proxy; sidecars only.
    pub advertise: Option<String>,
    /// Cloud Map attributes the sidecar reports with its endpoint (`--attribute k=v`).
    pub attributes: Vec<(String, String)>,
}

/// What the session asks of the proxy it serves.
pub enum Event {
    /// Apply this config; answer whether it was applied.
    Config {
        config: Box<ProxyConfig>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// New credentials (renewal or CA rotation) for the data plane's TLS.
    Credentials(Credentials),
}

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("this proxy has no certificate in {0} yet and no join token: pass --token or set APPLIANCE_TOKEN")]
    NoToken(String),
    #[error(transparent)]
    Token(#[from] super::token::TokenFormatError),
    #[error("the control plane refused enrolment: {0}")]
    Refused(String),
    #[error("{0}")]
    Local(String),
}

fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_MAX);
    // Full jitter over the upper half, so a fleet that lost the control plane together does
    // not come back together.
    let ms = cap.as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms.max(1)))
}

async fn resolve(control: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(control)
        .await
        .map_err(|e| format!("resolving {control}: {e}"))?
        .next()
        .ok_or_else(|| format!("{control} resolves to no address"))
}

fn client_endpoint(addr: &SocketAddr) -> Result<quinn::Endpoint, String> {
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid address")
    } else {
        "0.0.0.0:0".parse().expect("valid address")
    };
    quinn::Endpoint::client(bind).map_err(|e| format!("opening a UDP socket: {e}"))
}

/// Returns the proxy's credentials, enrolling first when the state dir has none. Refusals
/// are final (a bad token stays bad); an unreachable control plane is retried.
pub async fn ensure_enrolled(
    opts: &ClientOptions,
    state: &StateDir,
    token: Option<&str>,
    shutdown: &CancellationToken,
) -> Result<Credentials, EnrolError> {
    if let Some(c) = state.credentials() {
        return Ok(c);
    }
    let token = token.ok_or_else(|| EnrolError::NoToken(state.dir().display().to_string()))?;
    let token = JoinToken::parse(token)?;
    let mut attempt = 0;
    loop {
        match enrol_once(opts, &token).await {
            Ok(c) => {
                state
                    .save_credentials(&c)
                    .map_err(|e| EnrolError::Local(e.to_string()))?;
                tracing::info!(identity = %opts.identity, "enrolled with the control plane");
                return Ok(c);
            }
            Err(EnrolAttempt::Refused(r)) => return Err(EnrolError::Refused(r)),
            Err(EnrolAttempt::Transient(e)) => {
                tracing::warn!(control = %opts.control, error = %e, "cannot enrol yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(EnrolError::Local("stopped before enrolling".into())),
            _ = tokio::time::sleep(backoff(attempt)) => {}
        }
        attempt += 1;
    }
}

enum EnrolAttempt {
    Refused(String),
    Transient(String),
}

async fn enrol_once(opts: &ClientOptions, token: &JoinToken) -> Result<Credentials, EnrolAttempt> {
    let addr = resolve(&opts.control)
        .await
        .map_err(EnrolAttempt::Transient)?;
    let endpoint = client_endpoint(&addr).map_err(EnrolAttempt::Transient)?;
    let config =
        tls::enrol_client_config(token.ca_pin).map_err(|e| EnrolAttempt::Refused(e.to_string()))?;
    let conn = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| EnrolAttempt::Transient(e.to_string()))?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, conn).await {
        Ok(Ok(c)) => c,
        Ok(Err(quinn::ConnectionError::TransportError(e))) if e.reason.contains("certificate") => {
            // The control plane's certificate failed the token's pin: not worth retrying.
            return Err(EnrolAttempt::Refused(format!(
                "the control plane at {} is not the one the token was made by: {e}",
                opts.control
            )));
        }
        Ok(Err(e)) => return Err(EnrolAttempt::Transient(e.to_string())),
        Err(_) => {
            return Err(EnrolAttempt::Transient(format!(
                "no answer from {addr} in {CONNECT_TIMEOUT:?}"
            )))
        }
    };
    let result = async {
        let (key_pem, csr_pem) = tls::new_key_and_csr().map_err(EnrolAttempt::Refused)?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| EnrolAttempt::Transient(e.to_string()))?;
        let hello = frame::encode(ToControl::Enrol {
            token: token.to_string(),
            identity: opts.identity.to_string(),
            csr_pem,
        });
        frame::write(&mut send, &hello)
            .await
            .map_err(|e| EnrolAttempt::Transient(e.to_string()))?;
        match frame::read::<ToProxy, _>(&mut recv, MAX_TO_PROXY).await {
            Ok(Some(ToProxy::Enrolled {
                chain_pem,
                trust_bundle_pem,
            })) => Ok(Credentials {
                chain_pem,
                key_pem,
                trust_bundle_pem,
            }),
            Ok(Some(ToProxy::Refused { reason })) => Err(EnrolAttempt::Refused(reason)),
            Ok(Some(_)) => Err(EnrolAttempt::Transient(
                "unexpected answer to Enrol".to_owned(),
            )),
            Ok(None) => Err(EnrolAttempt::Transient(
                "the control plane closed without answering".to_owned(),
            )),
            Err(e) => Err(EnrolAttempt::Transient(e.to_string())),
        }
    }
    .await;
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;
    result
}

/// Cumulative per-target counters: (virtual node, requests, 5xx).
pub type StatsFn = Arc<dyn Fn() -> Vec<(String, u64, u64)> + Send + Sync>;

pub struct Client {
    pub opts: ClientOptions,
    pub state: Arc<StateDir>,
    pub events: mpsc::Sender<Event>,
    /// The local app's health (sidecars); always true for gateways.
    pub health: watch::Receiver<bool>,
    pub stats: StatsFn,
    /// The version the proxy runs now (from its cache at start).
    pub running_version: u64,
}

enum End {
    Shutdown,
    Lost(String),
}

impl Client {
    /// Keeps a session open until `shutdown`; then says it is draining and closes.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut attempt = 0u32;
        let mut endpoint: Option<quinn::Endpoint> = None;
        loop {
            let started = Instant::now();
            match self.session(&mut endpoint, &shutdown).await {
                End::Shutdown => break,
                End::Lost(e) => {
                    if started.elapsed() > STABLE_SESSION {
                        attempt = 0;
                    }
                    tracing::warn!(control = %self.opts.control, error = %e, "lost the control plane; serving the last good config");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt = attempt.saturating_add(1);
        }
        if let Some(e) = endpoint {
            e.wait_idle().await;
        }
    }

    async fn session(
        &mut self,
        endpoint: &mut Option<quinn::Endpoint>,
        shutdown: &CancellationToken,
    ) -> End {
        let Some(creds) = self.state.credentials() else {
            return End::Lost(format!("no credentials in {}", self.state.dir().display()));
        };
        let addr = match resolve(&self.opts.control).await {
            Ok(a) => a,
            Err(e) => return End::Lost(e),
        };
        if endpoint.is_none() {
            match client_endpoint(&addr) {
                Ok(e) => *endpoint = Some(e),
                Err(e) => return End::Lost(e),
            }
        }
        let ep = endpoint.as_ref().expect("set above");
        let config = match tls::mtls_client_config(
            &creds.chain_pem,
            &creds.key_pem,
            &creds.trust_bundle_pem,
        ) {
            Ok(c) => c,
            Err(e) => {
                return End::Lost(format!(
                    "credentials in {}: {e}",
                    self.state.dir().display()
                ))
            }
        };
        let connecting = match ep.connect_with(config, addr, SERVER_NAME) {
            Ok(c) => c,
            Err(e) => return End::Lost(e.to_string()),
        };
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            c = tokio::time::timeout(CONNECT_TIMEOUT, connecting) => match c {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return End::Lost(e.to_string()),
                Err(_) => return End::Lost(format!("no answer from {addr} in {CONNECT_TIMEOUT:?}")),
            },
        };
        let end = self.converse(&conn, creds, shutdown).await;
        if let End::Lost(reason) = &end {
            conn.close(1u32.into(), reason.as_bytes());
        }
        end
    }

    async fn converse(
        &mut self,
        conn: &quinn::Connection,
        creds: Credentials,
        shutdown: &CancellationToken,
    ) -> End {
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return End::Lost(e.to_string()),
        };
        let hello = frame::encode(ToControl::Hello {
            identity: self.opts.identity.to_string(),
            advertise: self.opts.advertise.clone(),
            healthy: *self.health.borrow_and_update(),
            running_version: self.running_version,
            attributes: self.opts.attributes.clone(),
        });
        if let Err(e) = frame::write(&mut send, &hello).await {
            return End::Lost(e.to_string());
        }
        tracing::info!(control = %self.opts.control, "connected to the control plane");
        let (tx, mut frames) = mpsc::channel(4);
        let reader = tokio::spawn(async move {
            loop {
                let r = frame::read::<ToProxy, _>(&mut recv, MAX_TO_PROXY).await;
                let last = !matches!(r, Ok(Some(_)));
                if tx.send(r).await.is_err() || last {
                    return;
                }
            }
        });
        let mut renew_at = renew_time(&creds.chain_pem);
        let mut pending_key: Option<String> = None;
        let mut stats_tick = tokio::time::interval(STATS_EVERY);
        let end = loop {
            let renew_sleep = tokio::time::sleep_until(renew_at);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = frame::write(&mut send, &frame::encode(ToControl::Draining)).await;
                    let _ = send.finish();
                    // The control plane closes the session once every proxy that routes
                    // here runs a config without this endpoint (at most `DRAIN_WAIT`); only
                    // then may the listeners stop.
                    let bound = crate::sync::server::DRAIN_WAIT + Duration::from_secs(1);
                    let _ = tokio::time::timeout(bound, conn.closed()).await;
                    conn.close(0u32.into(), b"proxy shutting down");
                    break End::Shutdown;
                }
                r = self.health.changed() => {
                    if r.is_ok() {
                        let m = ToControl::Health { healthy: *self.health.borrow_and_update() };
                        if let Err(e) = frame::write(&mut send, &frame::encode(m)).await {
                            break End::Lost(e.to_string());
                        }
                    }
                }
                _ = stats_tick.tick() => {
                    let m = ToControl::Stats { targets: (self.stats)() };
                    if let Err(e) = frame::write(&mut send, &frame::encode(m)).await {
                        break End::Lost(e.to_string());
                    }
                }
                _ = renew_sleep => {
                    match tls::new_key_and_csr() {
                        Ok((key, csr_pem)) => {
                            pending_key = Some(key);
                            if let Err(e) = frame::write(&mut send, &frame::encode(ToControl::Renew { csr_pem })).await {
                                break End::Lost(e.to_string());
                            }
                            tracing::info!("renewing the certificate");
                        }
                        Err(e) => tracing::error!(error = %e, "cannot make a key to renew with"),
                    }
                    // If no answer comes, ask again later.
                    renew_at = tokio::time::Instant::now() + Duration::from_secs(30);
                }
                f = frames.recv() => match f {
                    None | Some(Ok(None)) => break End::Lost("the control plane closed the session".into()),
                    Some(Err(e)) => break End::Lost(format!("bad frame from the control plane: {e}")),
                    Some(Ok(Some(m))) => match m {
                        ToProxy::Config { version, config_json } => {
                            let answer = self.apply(version, &config_json).await;
                            let reply = match answer {
                                Ok(()) => ToControl::Ack { version },
                                Err(error) => {
                                    tracing::warn!(version, %error, "config refused; staying on the previous one");
                                    ToControl::Nack { version, error }
                                }
                            };
                            if let Err(e) = frame::write(&mut send, &frame::encode(reply)).await {
                                break End::Lost(e.to_string());
                            }
                        }
                        ToProxy::Certificate { chain_pem, trust_bundle_pem } => {
                            let Some(key_pem) = pending_key.take() else {
                                tracing::warn!("a certificate arrived that this proxy did not ask for; ignored");
                                continue;
                            };
                            let c = Credentials { chain_pem, key_pem, trust_bundle_pem };
                            if let Err(e) = self.state.save_credentials(&c) {
                                tracing::error!(error = %e, "cannot save the renewed certificate");
                            }
                            renew_at = renew_time(&c.chain_pem);
                            let _ = self.events.send(Event::Credentials(c)).await;
                            tracing::info!("certificate renewed");
                        }
                        ToProxy::RenewNow { trust_bundle_pem } => {
                            if let Err(e) = self.state.save_bundle(&trust_bundle_pem) {
                                tracing::error!(error = %e, "cannot save the new CA bundle");
                            }
                            tracing::info!("the CA changed; renewing now");
                            renew_at = tokio::time::Instant::now();
                        }
                        ToProxy::Refused { reason } => {
                            tracing::error!(%reason, "the control plane refused this proxy");
                            break End::Lost(format!("refused: {reason}"));
                        }
                        ToProxy::Enrolled { .. } => break End::Lost("unexpected Enrolled in a session".into()),
                    },
                },
            }
        };
        reader.abort();
        end
    }

    async fn apply(&mut self, version: u64, json: &str) -> Result<(), String> {
        let config = ProxyConfig::from_json(json).map_err(|e| e.to_string())?;
        if config.identity != self.opts.identity {
            return Err(format!(
                "config is for {}, this proxy is {}",
                config.identity, self.opts.identity
            ));
        }
        if config.version != version {
            return Err(format!(
                "frame says version {version}, config says {}",
                config.version
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Event::Config {
                config: Box::new(config),
                reply,
            })
            .await
            .map_err(|_| "the proxy is stopping".to_owned())?;
        answer
            .await
            .map_err(|_| "the proxy is stopping".to_owned())??;
        if let Err(e) = self.state.save_config(json) {
            tracing::error!(error = %e, "cannot cache the config; a restart without the control plane would use an older one");
        }
        self.running_version = version;
        tracing::info!(version, "config applied");
        Ok(())
    }
}

/// Two thirds into the leaf's life, as a tokio instant.
fn renew_time(chain_pem: &str) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let Ok((from, to)) = tls::validity(chain_pem) else {
        return now;
    };
    let at = from + (to - from) * 2 / 3;
    let wait: time::Duration = at - OffsetDateTime::now_utc();
    if wait.is_negative() {
        now
    } else {
        now + Duration::from_secs_f64(wait.as_seconds_f64())
    }
}
