//! The admin listener: liveness, readiness, the applied routes, manual
//! reload, metrics, and the status page at `/` for a person. Kept apart from `--listen` so probes and scrapes
//! never compete with, or get routed like, proxied traffic.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;

use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::reload::{ReloadHandle, ReloadResult, Trigger};
use crate::state::{SharedSnapshot, Snapshot};
use crate::status_page;
use crate::upstream_health::UpstreamHealth;

/// The admin HTTP application.
pub(crate) struct Admin {
    lifecycle: Arc<Lifecycle>,
    snapshot: SharedSnapshot,
    reload: ReloadHandle,
    metrics: Arc<Metrics>,
    upstream_health: Arc<UpstreamHealth>,
}

impl Admin {
    /// An admin app over the shared state.
    pub(crate) fn new(
        lifecycle: Arc<Lifecycle>,
        snapshot: SharedSnapshot,
        reload: ReloadHandle,
        metrics: Arc<Metrics>,
        upstream_health: Arc<UpstreamHealth>,
    ) -> Self {
        Admin {
            lifecycle,
            snapshot,
            reload,
            metrics,
            upstream_health,
        }
    }

    /// `GET /`: the status page, from one snapshot of the table (with the
    /// rejection that goes with it), the counters and the upstream map.
    fn status_page(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let snap = self.snapshot.load();
        let traffic = status_page::traffic_by_route(&self.metrics.route_counters());
        let upstreams = self.upstream_health.entries();
        let html = status_page::render(&status_page::PageInput {
            now: std::time::SystemTime::now(),
            draining: self.lifecycle.is_draining(),
            applied: status_page::Applied {
                generation: snap.generation,
                sha256: &snap.sha256,
                loaded_at: snap.loaded_at,
                routes: snap.table.routes().collect(),
            },
            rejection: snap.last_error.as_deref(),
            traffic: &traffic,
            upstreams: &upstreams,
            refresh: status_page::refresh_param(query),
        });
        let mut resp = respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            html.into_bytes(),
        );
        // The page loads nothing and runs nothing; say so, so that a value
        // that ever slipped past escaping still could not run or fetch.
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        );
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        resp
    }

    fn routes_json(&self) -> serde_json::Value {
        let snap = self.snapshot.load();
        let mut v = snapshot_json(&snap);
        // `last_error` is the text (as the interface has it); `last_errors`
        // the same problems as objects, with file, line, column and route.
        // Read from the same snapshot as the table: one consistent view.
        let last = snap.last_error.as_deref();
        v["last_error"] = json!(last.map(|r| r.text.as_str()));
        v["last_errors"] = json!(last.map(|r| &r.errors));
        if let Some(r) = last.filter(|r| r.omitted > 0) {
            v["last_errors_omitted"] = json!(r.omitted);
        }
        v
    }
}

/// `/routes` without `last_error`: the applied table as JSON.
pub(crate) fn snapshot_json(snap: &Snapshot) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = snap
        .table
        .routes()
        .map(|r| {
            json!({
                "path": r.path,
                "host": r.host,
                "upstream": r.upstreams.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "strip_prefix": r.strip_prefix,
                "redirect_bare_prefix": r.redirect_bare_prefix,
                "connect_timeout": duration_text(r.connect_timeout),
                "read_timeout": duration_text(r.read_timeout),
            })
        })
        .collect();
    json!({
        "generation": snap.generation,
        "sha256": snap.sha256,
        "loaded_at": humantime::format_rfc3339_millis(snap.loaded_at).to_string(),
        "routes": routes,
    })
}

/// A duration the way routes.yaml writes it.
fn duration_text(d: Duration) -> String {
    switchyard_routes::format_duration(d)
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_owned());
        let query = req.uri.query().map(str::to_owned);
        let read = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/" if read => self.status_page(query.as_deref()),
            "/health" if read => text(StatusCode::OK, "ok\n"),
            "/ready" if read => {
                if self.lifecycle.is_draining() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if !self.lifecycle.is_listening() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            "/routes" if read => json_response(StatusCode::OK, &self.routes_json()),
            "/metrics" if read => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.encode(),
            ),
            "/reload" if method == Method::POST => match self.reload.reload(Trigger::Admin).await {
                Some(report) => {
                    let status = match report.result {
                        ReloadResult::Failure => StatusCode::UNPROCESSABLE_ENTITY,
                        _ => StatusCode::OK,
                    };
                    json_response(status, &json!(report))
                }
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "reload task is not running\n",
                ),
            },
            "/" | "/health" | "/ready" | "/routes" | "/metrics" => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
            }
            "/reload" => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
            _ => text(StatusCode::NOT_FOUND, &format!("404 not found: {path}\n")),
        }
    }
}
