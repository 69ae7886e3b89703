//! The 38 operations of App Mesh's REST API. Each handler is the same few steps: check the
//! body against the service model, parse the spec, write through the store in one
//! transaction, and answer with the bare resource object App Mesh returns.

use axum::routing::{get, put};
use axum::{extract::State, http::Uri, Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ops;
use super::request::Signed;
use super::AppState;
use crate::model::{validate_body, ApiError, ResourceId, ResourceKind, ResourceName};
use crate::store::{ClientToken, ListScope, Record, Tag};

/// Default and largest page of a List call (App Mesh's `limit` is 1..100).
const DEFAULT_PAGE: usize = 100;
/// Largest page of ListTagsForResource (its `limit` is 1..50).
const DEFAULT_TAG_PAGE: usize = 50;

type ApiResult = Result<Json<Value>, ApiError>;

pub(super) fn routes() -> Router<AppState> {
    use ResourceKind::*;
    let collection = |kind: ResourceKind| {
        put(move |s: State<AppState>, r: Signed| create(s, r, kind))
            .get(move |s: State<AppState>, r: Signed| list(s, r, kind))
    };
    let item = |kind: ResourceKind| {
        get(move |s: State<AppState>, r: Signed| describe(s, r, kind))
            .put(move |s: State<AppState>, r: Signed| update(s, r, kind))
            .delete(move |s: State<AppState>, r: Signed| delete(s, r, kind))
    };
    Router::new()
        .route("/v20190125/meshes", collection(Mesh))
        .route("/v20190125/meshes/{meshName}", item(Mesh))
        .route("/v20190125/meshes/{meshName}/virtualNodes", collection(VirtualNode))
        .route("/v20190125/meshes/{meshName}/virtualNodes/{virtualNodeName}", item(VirtualNode))
        .route("/v20190125/meshes/{meshName}/virtualRouters", collection(VirtualRouter))
        .route("/v20190125/meshes/{meshName}/virtualRouters/{virtualRouterName}", item(VirtualRouter))
        .route("/v20190125/meshes/{meshName}/virtualRouter/{virtualRouterName}/routes", collection(Route))
        .route("/v20190125/meshes/{meshName}/virtualRouter/{virtualRouterName}/routes/{routeName}", item(Route))
        .route("/v20190125/meshes/{meshName}/virtualServices", collection(VirtualService))
        .route("/v20190125/meshes/{meshName}/virtualServices/{virtualServiceName}", item(VirtualService))
        .route("/v20190125/meshes/{meshName}/virtualGateways", collection(VirtualGateway))
        .route("/v20190125/meshes/{meshName}/virtualGateways/{virtualGatewayName}", item(VirtualGateway))
        .route("/v20190125/meshes/{meshName}/virtualGateway/{virtualGatewayName}/gatewayRoutes", collection(GatewayRoute))
        .route(
            "/v20190125/meshes/{meshName}/virtualGateway/{virtualGatewayName}/gatewayRoutes/{gatewayRouteName}",
            item(GatewayRoute),
        )
        .route("/v20190125/tag", put(tag_resource))
        .route("/v20190125/untag", put(untag_resource))
        .route("/v20190125/tags", get(list_tags))
}

pub(super) async fn unknown_operation(uri: Uri) -> ApiError {
    ApiError::UnknownOperation(format!("no App Mesh operation at {}", uri.path()))
}

fn op(verb: &str, kind: ResourceKind) -> String {
    match (verb, kind) {
        ("List", ResourceKind::Mesh) => "ListMeshes".to_owned(),
        ("List", kind) => format!("List{}s", kind.title()),
        (verb, kind) => format!("{verb}{}", kind.title()),
    }
}

/// The resource a request addresses. `body_name` supplies the last name for creates, where
/// it travels in the body rather than the path.
fn resource_id(
    req: &Signed,
    kind: ResourceKind,
    body_name: Option<ResourceName>,
) -> Result<ResourceId, ApiError> {
    let name = match body_name {
        Some(n) => n,
        None => req.name(kind.name_field())?,
    };
    if kind == ResourceKind::Mesh {
        return Ok(ResourceId::mesh(name));
    }
    let mesh = req.name("meshName")?;
    Ok(match kind.parent() {
        Some(parent) => ResourceId::nested(kind, mesh, req.name(parent.name_field())?, name),
        None => ResourceId::top(kind, mesh, name),
    })
}

fn check_mesh_owner(state: &AppState, req: &Signed, operation: &str) -> Result<(), ApiError> {
    match req.query_param(operation, "meshOwner")? {
        Some(owner) if owner != state.store.account() => Err(ApiError::Forbidden(format!(
            "meshOwner {owner} is not this control plane's account {}",
            state.store.account()
        ))),
        _ => Ok(()),
    }
}

fn tags_of(body: &Value) -> Vec<Tag> {
    body.get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .map(|t| Tag {
                    key: t
                        .get("key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    value: t
                        .get("value")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The body's `clientToken`, with a digest of everything else the request said, so a retry
/// is told apart from a different request that reuses the token.
fn client_token(req: &Signed, body: &Value) -> Option<ClientToken> {
    let token = body.get("clientToken")?.as_str()?.to_owned();
    let mut rest = body.clone();
    if let Some(obj) = rest.as_object_mut() {
        obj.remove("clientToken");
    }
    let mut h = Sha256::new();
    for (k, v) in req
        .params
        .iter()
        .collect::<std::collections::BTreeMap<_, _>>()
    {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(rest.to_string().as_bytes());
    Some(ClientToken {
        token,
        request_digest: hex::encode(h.finalize()),
    })
}

async fn create(State(state): State<AppState>, req: Signed, kind: ResourceKind) -> ApiResult {
    let operation = op("Create", kind);
    let body = req.json()?;
    validate_body(&operation, &body)?;
    check_mesh_owner(&state, &req, &operation)?;
    let name = body
        .get(kind.name_field())
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = resource_id(
        &req,
        kind,
        Some(ResourceName::parse(kind.name_field(), name)?),
    )?;
    let spec = ops::parse_spec(kind, &body)?;
    let record = ops::create(&state, id, spec, tags_of(&body), client_token(&req, &body)).await?;
    Ok(Json(record.to_data()))
}

async fn update(State(state): State<AppState>, req: Signed, kind: ResourceKind) -> ApiResult {
    let operation = op("Update", kind);
    let body = req.json()?;
    validate_body(&operation, &body)?;
    check_mesh_owner(&state, &req, &operation)?;
    let id = resource_id(&req, kind, None)?;
    let spec = ops::parse_spec(kind, &body)?;
    let record = ops::update(&state, id, spec, client_token(&req, &body)).await?;
    Ok(Json(record.to_data()))
}

async fn describe(State(state): State<AppState>, req: Signed, kind: ResourceKind) -> ApiResult {
    let operation = op("Describe", kind);
    check_mesh_owner(&state, &req, &operation)?;
    let id = resource_id(&req, kind, None)?;
    let store = state.store.clone();
    Ok(Json(
        ops::blocking(move || store.describe(&id)).await?.to_data(),
    ))
}

async fn delete(State(state): State<AppState>, req: Signed, kind: ResourceKind) -> ApiResult {
    let operation = op("Delete", kind);
    check_mesh_owner(&state, &req, &operation)?;
    let id = resource_id(&req, kind, None)?;
    Ok(Json(ops::delete(&state, id).await?.to_data()))
}

async fn list(State(state): State<AppState>, req: Signed, kind: ResourceKind) -> ApiResult {
    let operation = op("List", kind);
    check_mesh_owner(&state, &req, &operation)?;
    let limit = page_limit(&req, &operation, DEFAULT_PAGE)?;
    let next = req.query_param(&operation, "nextToken")?.map(str::to_owned);
    let scope = match kind {
        ResourceKind::Mesh => ListScope::Meshes,
        ResourceKind::Route | ResourceKind::GatewayRoute => {
            let parent_kind = kind.parent().unwrap_or(ResourceKind::Mesh);
            let parent = ResourceId::top(
                parent_kind,
                req.name("meshName")?,
                req.name(parent_kind.name_field())?,
            );
            ListScope::Parent(parent, kind)
        }
        kind => ListScope::Mesh(req.name("meshName")?, kind),
    };
    let store = state.store.clone();
    let page = ops::blocking(move || store.list(&scope, limit, next.as_deref())).await?;
    let member = list_member(kind);
    let items: Vec<Value> = page.items.iter().map(Record::to_ref).collect();
    let mut out = json!({ member: items });
    if let Some(token) = page.next_token {
        out["nextToken"] = json!(token);
    }
    Ok(Json(out))
}

fn page_limit(req: &Signed, operation: &str, default: usize) -> Result<usize, ApiError> {
    Ok(match req.query_param(operation, "limit")? {
        // validate_param has checked it is an integer in the model's range.
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("limit: {v:?} is not a number")))?,
        None => default,
    })
}

/// The member a List output keeps its items in (`virtualNodes`, `meshes`, ...).
fn list_member(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Mesh => "meshes",
        ResourceKind::VirtualNode => "virtualNodes",
        ResourceKind::VirtualRouter => "virtualRouters",
        ResourceKind::Route => "routes",
        ResourceKind::VirtualService => "virtualServices",
        ResourceKind::VirtualGateway => "virtualGateways",
        ResourceKind::GatewayRoute => "gatewayRoutes",
    }
}

fn resource_arn(state: &AppState, req: &Signed, operation: &str) -> Result<ResourceId, ApiError> {
    let arn = req
        .query_param(operation, "resourceArn")?
        .ok_or_else(|| ApiError::bad_request("resourceArn: missing required query parameter"))?;
    state.store.parse_arn(arn)
}

async fn tag_resource(State(state): State<AppState>, req: Signed) -> ApiResult {
    let body = req.json()?;
    validate_body("TagResource", &body)?;
    let id = resource_arn(&state, &req, "TagResource")?;
    let tags = tags_of(&body);
    let store = state.store.clone();
    ops::blocking(move || store.tag(&id, tags)).await?;
    Ok(Json(json!({})))
}

async fn untag_resource(State(state): State<AppState>, req: Signed) -> ApiResult {
    let body = req.json()?;
    validate_body("UntagResource", &body)?;
    let id = resource_arn(&state, &req, "UntagResource")?;
    let keys: Vec<String> = body
        .get("tagKeys")
        .and_then(Value::as_array)
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let store = state.store.clone();
    ops::blocking(move || store.untag(&id, &keys)).await?;
    Ok(Json(json!({})))
}

async fn list_tags(State(state): State<AppState>, req: Signed) -> ApiResult {
    let operation = "ListTagsForResource";
    let id = resource_arn(&state, &req, operation)?;
    let limit = page_limit(&req, operation, DEFAULT_TAG_PAGE)?;
    let start = match req.query_param(operation, "nextToken")? {
        Some(t) => t
            .strip_prefix("tags:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("nextToken: {t:?} is not a token this API returned"))
            })?,
        None => 0,
    };
    let store = state.store.clone();
    let record = ops::blocking(move || store.describe(&id)).await?;
    let tags = &record.row.tags;
    let page: Vec<&Tag> = tags.iter().skip(start).take(limit).collect();
    let mut out = json!({ "tags": page });
    if start + page.len() < tags.len() {
        out["nextToken"] = json!(format!("tags:{}", start + page.len()));
    }
    Ok(Json(out))
}
