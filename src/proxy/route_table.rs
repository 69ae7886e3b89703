//! Route matching, as App Mesh's Envoy did it: gateway routes pick a virtual service, a
//! service's routes pick weighted clusters. Pure: a `RouteTable` is built once per config
//! (regexes compiled then) and matching touches no I/O and allocates nothing.

mod matcher;

pub use matcher::RequestView;

use std::collections::HashMap;

use crate::compile::{
    ConfigError, GatewayRouteConfig, ListenerRole, ProxyConfig, RouteConfig, WeightedCluster,
};
use crate::model::spec::{
    DefaultGatewayRouteRewrite, HttpGatewayRouteMatch, HttpRouteMatch, HttpScheme,
};
use matcher::Matcher;

/// One gateway route, ready to match.
pub struct GatewayRoute {
    pub name: String,
    pub service: String,
    matcher: Matcher,
    rewrite_host: bool,
    prefix_rewrite: PrefixRewrite,
    path_rewrite: Option<String>,
}

enum PrefixRewrite {
    /// App Mesh's default: the matched prefix becomes `/`.
    Default,
    Value(String),
    Keep,
}

impl GatewayRoute {
    fn new(r: &GatewayRouteConfig) -> Result<GatewayRoute, ConfigError> {
        let m: &HttpGatewayRouteMatch = &r.r#match;
        let mut matcher = Matcher::new(
            m.prefix.as_ref(),
            m.path.as_ref(),
            m.method.map(|x| x.as_str()),
            m.headers.as_ref(),
            m.query_parameters.as_ref(),
        )?;
        if let Some(h) = &m.hostname {
            matcher.host_exact = h.exact.clone();
            matcher.host_suffix = h.suffix.clone();
        }
        let rw = r.rewrite.as_ref();
        let rewrite_host = rw
            .and_then(|w| w.hostname.as_ref())
            .and_then(|h| h.default_target_hostname)
            != Some(DefaultGatewayRouteRewrite::Disabled);
        let prefix_rewrite = match rw.and_then(|w| w.prefix.as_ref()) {
            Some(p) if p.value.is_some() => {
                PrefixRewrite::Value(p.value.clone().unwrap_or_default())
            }
            Some(p) if p.default_prefix == Some(DefaultGatewayRouteRewrite::Disabled) => {
                PrefixRewrite::Keep
            }
            _ => PrefixRewrite::Default,
        };
        Ok(GatewayRoute {
            name: r.name.clone(),
            service: r.service.clone(),
            matcher,
            rewrite_host,
            prefix_rewrite,
            path_rewrite: rw
                .and_then(|w| w.path.as_ref())
                .and_then(|p| p.exact.clone()),
        })
    }

    /// The path the upstream sees, after App Mesh's rewrite rules.
    pub fn rewrite_path(&self, path: &str) -> String {
        if let Some(exact) = &self.path_rewrite {
            return exact.clone();
        }
        match (&self.matcher.prefix, &self.prefix_rewrite) {
            (Some(prefix), PrefixRewrite::Default) => {
                let rest = &path[prefix.len().min(path.len())..];
                format!("/{}", rest.trim_start_matches('/'))
            }
            (Some(prefix), PrefixRewrite::Value(v)) => {
                format!("{v}{}", &path[prefix.len().min(path.len())..])
            }
            _ => path.to_owned(),
        }
    }

    /// Whether the Host header becomes the target virtual service's name.
    pub fn rewrites_host(&self) -> bool {
        self.rewrite_host
    }
}

/// One route of a virtual service, ready to match.
pub struct Route {
    pub name: String,
    pub config: RouteConfig,
    matcher: Matcher,
    total_weight: u32,
}

impl Route {
    fn new(r: &RouteConfig) -> Result<Route, ConfigError> {
        let m: &HttpRouteMatch = &r.r#match;
        let mut matcher = Matcher::new(
            m.prefix.as_ref(),
            m.path.as_ref(),
            m.method.map(|x| x.as_str()),
            m.headers.as_ref(),
            m.query_parameters.as_ref(),
        )?;
        matcher.port = m.port;
        matcher.scheme = m.scheme.map(|s| match s {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        });
        Ok(Route {
            name: r.name.clone(),
            total_weight: r.targets.iter().map(|t| t.weight).sum(),
            config: r.clone(),
            matcher,
        })
    }

    /// A route matching everything with these targets, for other modules' tests.
    #[cfg(test)]
    pub(crate) fn for_tests(targets: Vec<WeightedCluster>) -> Route {
        Route::new(&RouteConfig {
            name: "vr/r".into(),
            r#match: HttpRouteMatch {
                prefix: Some("/".into()),
                ..HttpRouteMatch::default()
            },
            targets,
            per_request_timeout_ms: 15_000,
            idle_timeout_ms: crate::compile::DEFAULT_IDLE_TIMEOUT_MS,
            retry: crate::compile::RetryConfig::app_mesh_default(),
        })
        .expect("a prefix match compiles")
    }

    /// Picks a target by weight; `roll` is uniform in `0..u32::MAX`. Zero-weight targets
    /// never win; a route whose weights are all zero has no target.
    pub fn pick_target(&self, roll: u32) -> Option<&WeightedCluster> {
        self.pick_target_among(roll, |_| true)
    }

    /// Like `pick_target`, among the targets `usable` accepts (those with a healthy
    /// endpoint), so a dead target's share goes to the live ones by their weights.
    pub fn pick_target_among(
        &self,
        roll: u32,
        usable: impl Fn(&WeightedCluster) -> bool,
    ) -> Option<&WeightedCluster> {
        let total: u32 = if self.total_weight == 0 {
            0
        } else {
            self.config
                .targets
                .iter()
                .filter(|t| usable(t))
                .map(|t| t.weight)
                .sum()
        };
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for t in self.config.targets.iter().filter(|t| usable(t)) {
            if point < t.weight {
                return Some(t);
            }
            point -= t.weight;
        }
        None
    }
}

/// The matchable form of a whole `ProxyConfig`.
pub struct RouteTable {
    /// Listener port (as configured) -> gateway routes in match order.
    pub gateway: HashMap<u16, Vec<GatewayRoute>>,
    /// Virtual service name -> routes in match order.
    pub services: HashMap<String, Vec<Route>>,
}

impl RouteTable {
    pub fn new(config: &ProxyConfig) -> Result<RouteTable, ConfigError> {
        let mut gateway = HashMap::new();
        for l in &config.listeners {
            if let ListenerRole::Gateway { routes, .. } = &l.role {
                gateway.insert(
                    l.port,
                    routes
                        .iter()
                        .map(GatewayRoute::new)
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
        }
        let mut services = HashMap::new();
        for (name, s) in &config.services {
            services.insert(
                name.clone(),
                s.routes
                    .iter()
                    .map(Route::new)
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(RouteTable { gateway, services })
    }

    pub fn match_gateway(&self, port: u16, req: &RequestView) -> Option<&GatewayRoute> {
        self.gateway
            .get(&port)?
            .iter()
            .find(|r| r.matcher.matches(req))
    }

    /// `None` if the service is unknown; `Some(None)` if it is known but no route matches.
    pub fn match_service(&self, service: &str, req: &RequestView) -> Option<Option<&Route>> {
        let routes = self.services.get(service)?;
        Some(routes.iter().find(|r| r.matcher.matches(req)))
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, Method};

    use super::*;
    use crate::compile::{compile, Endpoints};
    use crate::model::Identity;

    fn table() -> RouteTable {
        let snap = crate::compile::tests_support::walkthrough();
        let id = Identity::parse("mesh/ColorApp/virtualGateway/colorgateway-vg").unwrap();
        RouteTable::new(&compile(&snap, &id, &Endpoints::new(), 1).unwrap()).unwrap()
    }

    fn view<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            path,
            query: None,
            host: "gw.example",
            port: None,
            scheme: "http",
            headers,
        }
    }

    #[test]
    fn gateway_routes_pick_the_virtual_service_by_prefix() {
        let t = table();
        let h = HeaderMap::new();
        for (path, want) in [
            (
                "/color1/tell",
                Some("colorteller-1.default.svc.cluster.local"),
            ),
            ("/color2", Some("colorteller-2.default.svc.cluster.local")),
            ("/other", None),
        ] {
            assert_eq!(
                t.match_gateway(9080, &view(path, &h))
                    .map(|r| r.service.as_str()),
                want,
                "GET {path}"
            );
        }
    }

    #[test]
    fn the_matched_prefix_becomes_slash_by_default() {
        let t = table();
        let h = HeaderMap::new();
        let gr = t.match_gateway(9080, &view("/color1/tell", &h)).unwrap();
        assert_eq!(gr.rewrite_path("/color1/tell"), "/tell");
        assert_eq!(gr.rewrite_path("/color1"), "/");
        assert!(gr.rewrites_host());
        let route = t
            .match_service(&gr.service, &view("/tell", &h))
            .unwrap()
            .unwrap();
        assert_eq!(route.name, "colorteller-vr-1/colorteller-route-1");
        assert!(t
            .match_service(&gr.service, &view("/nope", &h))
            .unwrap()
            .is_none());
    }

    #[test]
    fn weights_split_evenly_over_the_roll_space() {
        let t = table();
        let h = HeaderMap::new();
        let route = t
            .match_service(
                "colorteller-1.default.svc.cluster.local",
                &view("/tell", &h),
            )
            .unwrap()
            .unwrap();
        let white = (0..1000u32)
            .filter(|r| route.pick_target(*r).unwrap().cluster.contains("white"))
            .count();
        assert_eq!(white, 500);
    }
}
