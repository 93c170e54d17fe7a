//! `switchyard reload`: one `POST /reload` to the admin listener, over a
//! plain HTTP/1.1 connection (no client library needed for one request).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use switchyard_server::report::{ReloadReport, ReloadResult};

/// One line (plus the error's lines on failure) for the terminal.
pub fn summary(report: &ReloadReport) -> String {
    match report.result {
        ReloadResult::Success => {
            let mut s = format!(
                "success: generation {}, {} routes",
                report.generation, report.routes
            );
            for (what, list) in [
                ("added", &report.added),
                ("removed", &report.removed),
                ("changed", &report.changed),
            ] {
                if !list.is_empty() {
                    s.push_str(&format!("; {what} {}", list.join(", ")));
                }
            }
            s
        }
        ReloadResult::Unchanged => {
            format!("unchanged: generation {} keeps serving", report.generation)
        }
        ReloadResult::Failure => format!(
            "failure: generation {} keeps serving\n{}",
            report.generation,
            report.error.as_deref().unwrap_or("")
        ),
    }
}

/// A wildcard listen address is reached on loopback.
fn connect_addr(admin: &str) -> std::io::Result<SocketAddr> {
    let addr = admin
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    Ok(match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    })
}

/// Sends `POST /reload` and parses the JSON answer.
pub fn post_reload(admin: &str) -> Result<ReloadReport, String> {
    let addr = connect_addr(admin).map_err(|e| e.to_string())?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let timeout = Some(Duration::from_secs(30));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "malformed HTTP answer".to_owned())?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    serde_json::from_str(body.trim())
        .map_err(|e| format!("HTTP {status}, not a reload answer ({e}): {}", body.trim()))
}
