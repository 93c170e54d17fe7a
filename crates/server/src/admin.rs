//! The admin listener: liveness, readiness and (in later layers) routes,
//! reload and metrics. Kept apart from `--listen` so probes and scrapes
//! never compete with, or get routed like, proxied traffic.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::state::Lifecycle;

/// The admin HTTP application.
pub struct Admin {
    lifecycle: Arc<Lifecycle>,
}

impl Admin {
    /// An admin app reporting on `lifecycle`.
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        Admin { lifecycle }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    let mut resp = Response::new(body.as_bytes().to_vec());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_owned());
        match (method, path.as_str()) {
            (Method::GET | Method::HEAD, "/health") => text(StatusCode::OK, "ok\n"),
            (Method::GET | Method::HEAD, "/ready") => {
                if self.lifecycle.is_draining() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            (_, "/health" | "/ready") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
            _ => text(StatusCode::NOT_FOUND, &format!("404 not found: {path}\n")),
        }
    }
}
