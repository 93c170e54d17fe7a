//! Responses the proxy writes itself: short plain-text bodies with a
//! `Content-Length`, so the client connection stays reusable.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete `text/plain` response.
pub(crate) async fn text(session: &mut Session, status: u16, body: String) -> Result<()> {
    text_with_location(session, status, body, None).await
}

/// Writes the `308 Permanent Redirect` for a bare prefix: `Location` and a
/// short text body naming it. 308 rather than nginx's 301, so a client
/// repeats a POST as a POST, with its body, instead of turning it into a
/// GET.
pub(crate) async fn redirect(session: &mut Session, location: &str) -> Result<()> {
    text_with_location(session, 308, redirect_body(location), Some(location)).await
}

/// The body of the 308 for a bare prefix, on either path.
pub(crate) fn redirect_body(location: &str) -> String {
    format!("308 permanent redirect: {location}\n")
}

/// [`text`], with a `Location` field after the others when given; the
/// fast path writes the fields in the same order.
async fn text_with_location(
    session: &mut Session,
    status: u16,
    body: String,
    location: Option<&str>,
) -> Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("content-type", "text/plain; charset=utf-8")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    if let Some(location) = location {
        header.insert_header("location", location.to_owned())?;
    }
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

/// The answer to `OPTIONS *` (RFC 9110 §9.3.7): what the proxy serves,
/// with no content.
pub(crate) async fn server_options(session: &mut Session) -> Result<()> {
    let mut header = ResponseHeader::build(200, Some(3))?;
    header.insert_header("allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")?;
    header.insert_header("content-length", "0")?;
    session.write_response_header(Box::new(header), true).await
}

/// The body of the 400 for a path that cannot be routed, on either path.
pub(crate) fn bad_path_body(why: switchyard_routes::PathError, path: &str) -> String {
    match why {
        switchyard_routes::PathError::EscapesRoot => {
            format!("400 bad request: path {path:?} climbs above the root\n")
        }
        switchyard_routes::PathError::NotAbsolute => format!(
            "400 bad request: request target {path:?} is not a path (it must start with /)\n"
        ),
    }
}

/// The main listener's own `/health`: 200 `ok`, or 503 `draining` once a
/// SIGTERM has begun the drain.
pub(crate) fn health(draining: bool) -> (u16, &'static str) {
    if draining {
        (503, "draining\n")
    } else {
        (200, "ok\n")
    }
}

/// The body of the 404 for a request no route matches (`path` normalized).
pub(crate) fn no_route_body(path: &str) -> String {
    format!("404 not found: no route for {path}\n")
}

/// The body of the answer to a request no upstream of `route` answered:
/// 504 for a timeout, 502 otherwise, naming the error (`etype`, Pingora's
/// name for it on either path).
pub(crate) fn upstream_failure_body(code: u16, route: &str, etype: &str) -> String {
    match code {
        504 => format!("504 gateway timeout: route {route}: upstream timed out ({etype})\n"),
        _ => format!("502 bad gateway: route {route}: upstream unreachable or refused ({etype})\n"),
    }
}

/// The body of the 400 for a request body whose chunked framing broke.
pub(crate) fn bad_body(bad: &crate::chunk_guard::BadChunk) -> String {
    format!("400 bad request: {bad}\n")
}
