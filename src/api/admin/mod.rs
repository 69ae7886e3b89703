//! The admin page: sign-in, sessions, CSRF, and the page's assets (`web/`, built into the
//! binary so it works on a private subnet). The page is a plain client of the public API on
//! the same origin; this module only adds a second way in (a session cookie, see
//! `session_caller`) and a few JSON calls the page needs. Knows nothing of proxy internals.

mod assets;
mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::ops::blocking;
use super::request::Signed;
use super::AppState;
use crate::model::ApiError;
use session::{FailureLimiter, Session, Sessions};

/// The session cookie's name.
const COOKIE: &str = "appliance_session";
/// The header every write made with a session must carry, equal to the session's token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest admin password `create-admin` accepts: a password can be guessed offline from
/// a stolen store, so it must be long rather than clever.
const MIN_PASSWORD_LEN: usize = 12;
/// Longest user name or secret read at sign-in; Argon2 over megabytes is a cheap DoS.
const MAX_CREDENTIAL_LEN: usize = 256;

/// Marks requests that arrived over TLS (inserted by `serve::serve_with`), so the session
/// cookie gets `Secure` there and still works over plain HTTP on loopback.
#[derive(Clone, Copy, Debug)]
pub struct ServedOverTls;

/// Process-wide admin state. A session lives in memory only: a control plane restart signs
/// everyone out, which is the safe direction.
#[derive(Default)]
struct Admin {
    sessions: Mutex<Sessions>,
    failures: Mutex<FailureLimiter>,
}

fn admin() -> &'static Admin {
    static ADMIN: OnceLock<Admin> = OnceLock::new();
    ADMIN.get_or_init(Admin::default)
}

/// Locks a table; a panic while it was held left it consistent (every update is one map
/// operation), so a poisoned lock is used as is rather than taking the page down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the admin page's own calls fail. The message is what the sign-in form shows.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    /// Unknown access key id or user, or the wrong secret or password. One message for
    /// both, so the form does not tell which user names exist.
    #[error("the access key id (or user name) and secret (or password) do not match")]
    BadCredentials,
    /// This address failed too often; the value is the seconds until it may try again.
    #[error("too many failed sign-ins from this address; try again in {0} s")]
    TooManyAttempts(u64),
    /// No live session cookie.
    #[error("not signed in")]
    NoSession,
    /// A write without the session's CSRF token.
    #[error("the X-CSRF-Token header is missing or does not match the session")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            AdminError::BadCredentials | AdminError::NoSession => StatusCode::UNAUTHORIZED,
            AdminError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            AdminError::Csrf => StatusCode::FORBIDDEN,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Api(e) => return e.into_response(),
        };
        let mut response = (status, Json(json!({ "message": self.to_string() }))).into_response();
        if let AdminError::TooManyAttempts(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        secure_headers(response)
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/signin", get(signin_page))
        .route("/ui/{file}", get(asset))
        .route(
            "/appliance/v1/admin/session",
            post(sign_in).get(whoami).delete(sign_out),
        )
        .route("/appliance/v1/admin/version", get(version))
        .route(
            "/appliance/v1/admin/users",
            post(create_user).get(list_users),
        )
        .route(
            "/appliance/v1/admin/users/{user}",
            axum::routing::delete(delete_user),
        )
        .route(
            "/appliance/v1/admin/users/{user}/password",
            axum::routing::put(set_password),
        )
}

/// The caller of a request that carries a session cookie and no SigV4 signature: `None`
/// when there is no cookie (the request goes on to SigV4). A write (anything but GET and
/// HEAD) must also carry the session's CSRF token.
pub(super) fn session_caller(
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<String, ApiError>> {
    if headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    let token = cookie(headers)?;
    let Some(session) = lock(&admin().sessions).touch(&token, Instant::now()) else {
        return Some(Err(ApiError::MissingAuthenticationToken(
            "the admin session has ended; sign in again".into(),
        )));
    };
    if !csrf_ok(method, headers, &session) {
        return Some(Err(ApiError::Forbidden(AdminError::Csrf.to_string())));
    }
    Some(Ok(format!("session:{}", session.user)))
}

fn csrf_ok(method: &Method, headers: &HeaderMap, session: &Session) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| super::sigv4::constant_time_eq(v.as_bytes(), session.csrf.as_bytes()))
}

/// The session token from the `Cookie` header(s), if any.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

fn current_session(headers: &HeaderMap) -> Option<(String, Session)> {
    let token = cookie(headers)?;
    let session = lock(&admin().sessions).touch(&token, Instant::now())?;
    Some((token, session))
}

/// Headers every admin response carries: no framing (clickjacking), no sniffing, no
/// referrer, and a CSP that allows only this origin's own scripts and styles.
fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(assets::CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn index(headers: HeaderMap) -> Response {
    match current_session(&headers) {
        Some(_) => assets::serve(assets::APP_PAGE),
        None => secure_headers(Redirect::to("/signin").into_response()),
    }
}

async fn signin_page(headers: HeaderMap) -> Response {
    match current_session(&headers) {
        Some(_) => secure_headers(Redirect::to("/").into_response()),
        None => assets::serve(assets::SIGNIN_PAGE),
    }
}

/// Assets the sign-in page needs are public; the rest need a session.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = assets::find(&file) else {
        return secure_headers((StatusCode::NOT_FOUND, "no such file").into_response());
    };
    if !asset.public && current_session(&headers).is_none() {
        return AdminError::NoSession.into_response();
    }
    assets::serve(asset)
}

fn client_addr(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
        // Both accept loops (plain and TLS) insert the peer's address; only in-process
        // tests serve without it, and there all callers share one bucket.
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignIn {
    user: String,
    secret: String,
}

/// `POST /appliance/v1/admin/session {"user","secret"}`: checks an access key pair from
/// `DIR/credentials` or an admin user's password, and starts a session.
async fn sign_in(State(state): State<AppState>, req: Request) -> Result<Response, AdminError> {
    let addr = client_addr(&req);
    let tls = req.extensions().get::<ServedOverTls>().is_some();
    // JSON only: a cross-site HTML form cannot send it without a CORS preflight, which
    // this origin never grants, so no other site can sign a browser in (login CSRF).
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(AdminError::BadRequest(
            "sign-in takes a JSON body (Content-Type: application/json)".into(),
        ));
    }
    // Counted before the body is read or a hash is run: a burst of parallel guesses gets
    // only the limit's worth of Argon2 runs, not one per request.
    if let Err(wait) = lock(&admin().failures).begin_attempt(addr, Instant::now()) {
        tracing::warn!(%addr, "sign-in refused: too many failures");
        return Err(AdminError::TooManyAttempts(wait.as_secs().max(1)));
    }
    let body = axum::body::to_bytes(req.into_body(), 4 * MAX_CREDENTIAL_LEN)
        .await
        .map_err(|_| AdminError::BadRequest("sign-in body is too large".into()))?;
    let form: SignIn = serde_json::from_slice(&body)
        .map_err(|e| AdminError::BadRequest(format!("sign-in body: {e}")))?;
    if form.user.len() > MAX_CREDENTIAL_LEN || form.secret.len() > MAX_CREDENTIAL_LEN {
        return Err(AdminError::BadRequest(format!(
            "user and secret are at most {MAX_CREDENTIAL_LEN} bytes"
        )));
    }
    let ok = state.keys.matches(&form.user, &form.secret) || {
        let store = state.store.clone();
        let (user, secret) = (form.user.clone(), form.secret.clone());
        // At most one Argon2 run per core at a time (each takes about 19 MiB): a burst
        // from many addresses queues here instead of growing the heap.
        let _permit = hash_slots()
            .acquire()
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hash semaphore closed: {e}")))?;
        blocking(move || password_matches(&store, &user, &secret)).await?
    };
    if !ok {
        // The attempt was counted by `begin_attempt`.
        tracing::warn!(%addr, user = ?form.user, "sign-in failed");
        return Err(AdminError::BadCredentials);
    }
    lock(&admin().failures).record_success(addr);
    let (token, session) = lock(&admin().sessions).start(&form.user, Instant::now());
    tracing::info!(%addr, user = ?form.user, "admin signed in");
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::MAX_LIFETIME.as_secs(),
        if tls { "; Secure" } else { "" }
    );
    let mut response =
        Json(json!({ "user": session.user, "csrfToken": session.csrf })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(secure_headers(response))
}

/// Permits for concurrent Argon2 runs (sign-in checks and new passwords): one per core.
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// A hash of a random password with the same parameters as real ones. An unknown user name
/// is checked against it, so a sign-in takes as long whether or not the user exists.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let mut password = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut password);
            Argon2::default()
                .hash_password(&password, &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .as_deref()
}

fn password_matches(
    store: &crate::store::Store,
    user: &str,
    password: &str,
) -> Result<bool, ApiError> {
    let Some(stored) = store.admin_password_hash(user)? else {
        if let Some(dummy) = dummy_hash().and_then(|d| PasswordHash::new(d).ok()) {
            // Same work as a real check; the answer is no either way.
            let _ = Argon2::default().verify_password(password.as_bytes(), &dummy);
        }
        return Ok(false);
    };
    let hash = PasswordHash::new(&stored).map_err(|e| {
        ApiError::internal(anyhow::anyhow!(
            "stored hash of admin {user} is not a PHC string: {e}"
        ))
    })?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok())
}

/// `GET /appliance/v1/admin/session`: who is signed in, and the CSRF token for writes (the
/// page reads it here after a reload, since the cookie itself is HttpOnly).
async fn whoami(headers: HeaderMap) -> Result<Response, AdminError> {
    let (_, session) = current_session(&headers).ok_or(AdminError::NoSession)?;
    Ok(secure_headers(
        Json(json!({ "user": session.user, "csrfToken": session.csrf })).into_response(),
    ))
}

/// `DELETE /appliance/v1/admin/session`: signs out (CSRF-checked, so another site cannot
/// sign the browser out either).
async fn sign_out(headers: HeaderMap) -> Result<Response, AdminError> {
    let (token, session) = current_session(&headers).ok_or(AdminError::NoSession)?;
    if !csrf_ok(&Method::DELETE, &headers, &session) {
        return Err(AdminError::Csrf);
    }
    lock(&admin().sessions).end(&token);
    tracing::info!(user = ?session.user, "admin signed out");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "appliance_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(secure_headers(response))
}

/// `GET /appliance/v1/admin/version`: the store version, which the page polls to redraw
/// when anything changed.
async fn version(State(state): State<AppState>, _req: Signed) -> Json<Value> {
    Json(json!({ "version": state.store.version() }))
}

/// `POST /appliance/v1/admin/users {"UserName","Password"}`: an admin user for the page
/// (`appliance ctl create-admin`). Signed like any other call.
async fn create_user(State(state): State<AppState>, req: Signed) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let user = match body.get("UserName") {
        Some(Value::String(u)) => u.clone(),
        _ => return Err(ApiError::bad_request("UserName: must be a string")),
    };
    if user.is_empty()
        || user.len() > 64
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "UserName: {user:?} must be 1 to 64 of A-Z a-z 0-9 - _ . @"
        )));
    }
    let hash = hash_password(password_field(&body)?).await?;
    let store = state.store.clone();
    let name = user.clone();
    blocking(move || store.create_admin(&name, &hash)).await?;
    tracing::info!(user = ?user, "admin user created");
    Ok(Json(json!({ "UserName": user })))
}

/// The body's `Password`, within the length rules.
fn password_field(body: &Value) -> Result<String, ApiError> {
    let password = match body.get("Password") {
        Some(Value::String(p)) => p.clone(),
        _ => return Err(ApiError::bad_request("Password: must be a string")),
    };
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::bad_request(format!(
            "Password: must be {MIN_PASSWORD_LEN} to {MAX_CREDENTIAL_LEN} characters"
        )));
    }
    Ok(password)
}

/// An Argon2id PHC string of `password`, computed under the hash semaphore.
async fn hash_password(password: String) -> Result<String, ApiError> {
    let _permit = hash_slots()
        .acquire()
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hash semaphore closed: {e}")))?;
    blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Ok(Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing a password: {e}")))?
            .to_string())
    })
    .await
}

/// `GET /appliance/v1/admin/users`: every admin user's name and creation time (never a
/// hash), by name (`appliance ctl list-admins`).
async fn list_users(State(state): State<AppState>, _req: Signed) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let users = blocking(move || store.list_admins()).await?;
    let users: Vec<Value> = users
        .into_iter()
        .map(|(user, created)| json!({ "UserName": user, "CreatedAt": created }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

/// `DELETE /appliance/v1/admin/users/{user}`: removes the user and ends its sessions
/// (`appliance ctl delete-admin`).
async fn delete_user(State(state): State<AppState>, req: Signed) -> Result<Json<Value>, ApiError> {
    let user = path_user(&req)?;
    let store = state.store.clone();
    let name = user.clone();
    blocking(move || store.delete_admin(&name)).await?;
    lock(&admin().sessions).end_user(&user);
    tracing::info!(user = ?user, "admin user deleted");
    Ok(Json(json!({ "UserName": user })))
}

/// `PUT /appliance/v1/admin/users/{user}/password {"Password"}`: a new password for an
/// existing user; its sessions end, so a rotated password locks out whoever held the old
/// one (`appliance ctl set-admin-password`).
async fn set_password(State(state): State<AppState>, req: Signed) -> Result<Json<Value>, ApiError> {
    let user = path_user(&req)?;
    let hash = hash_password(password_field(&req.json()?)?).await?;
    let store = state.store.clone();
    let name = user.clone();
    blocking(move || store.set_admin_password(&name, &hash)).await?;
    lock(&admin().sessions).end_user(&user);
    tracing::info!(user = ?user, "admin password changed");
    Ok(Json(json!({ "UserName": user })))
}

fn path_user(req: &Signed) -> Result<String, ApiError> {
    req.params
        .get("user")
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("route lacks path parameter user")))
}
