//! The fast path against pingora-proxy: the same requests and the same
//! upstream answers through `--fast-path on` and `--fast-path off`; what
//! the client receives and what the upstream receives must be the same
//! bytes (the `Date` value aside), or the fast path must refuse where
//! Pingora let something through.
//!
//! Each case has an upstream of its own per proxy, which reads one
//! request, records its bytes, writes the case's answer and closes, so no
//! case sees another's connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{patience, Proxy};

/// What a case may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Both paths give the client and the upstream the same bytes.
    Same,
    /// The fast path refuses (an error status, connection closed) what
    /// Pingora passes on.
    FastRefuses,
    /// Both answer the client the same, and the fast path sends the
    /// upstream nothing where Pingora sent a head it then abandoned (a
    /// request body already broken on arrival).
    FastSendsNothing,
}

struct Case {
    name: &'static str,
    /// `{P}` is replaced by the case's route prefix, `{S}` by that of its
    /// route with `strip_prefix`, `{R}` by that of its route with
    /// `redirect_bare_prefix`.
    request: &'static str,
    response: &'static str,
    expect: Expect,
}

const fn case(name: &'static str, request: &'static str, response: &'static str) -> Case {
    Case {
        name,
        request,
        response,
        expect: Expect::Same,
    }
}

const fn nothing_sent(name: &'static str, request: &'static str, response: &'static str) -> Case {
    Case {
        name,
        request,
        response,
        expect: Expect::FastSendsNothing,
    }
}

const fn refused(name: &'static str, request: &'static str, response: &'static str) -> Case {
    Case {
        name,
        request,
        response,
        expect: Expect::FastRefuses,
    }
}

/// An answer head of ~100 KiB (one huge field), larger than the fast
/// path takes.
const ENDLESS_HEAD: &str = concat!(
    "HTTP/1.1 200 OK\r\nX-Big: ",
    include_str!("fixtures/100k.txt"),
    "\r\nContent-Length: 2\r\n\r\nhi"
);

const GET: &str = "GET {P}/x?q=1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: 1\r\n\r\nhi";

/// The corpus: ordinary traffic of every framing, the hop-by-hop and
/// forwarding rules, and hostile answers from the public smuggling
/// corpora (HTTP Garden's transducer findings, Http11Probe's response
/// cases): conflicting lengths, obfuscated codings, bare line endings.
fn corpus() -> Vec<Case> {
    vec![
        case("get, content-length answer", GET, OK),
        case(
            "forwarding headers and hop-by-hop fields",
            "GET {P}/a HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
            OK,
        ),
        case(
            "two X-Forwarded-For lines",
            "GET {P}/a HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\r\n",
            OK,
        ),
        case("strip_prefix", "GET {S}/deep/path?k=v HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("strip_prefix to the root", "GET {S} HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("dot segments", "GET {P}/a/./b/../c HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case(
            "post with a length",
            "POST {P}/form HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
            OK,
        ),
        case(
            "post chunked with extensions and a trailer",
            "POST {P}/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
            OK,
        ),
        case("head", "HEAD {P}/h HTTP/1.1\r\nHost: a.test\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        case(
            "chunked answer",
            GET,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        ),
        case("close-delimited answer", GET, "HTTP/1.1 200 OK\r\nX-Up: 1\r\n\r\nuntil the end"),
        case("204", GET, "HTTP/1.1 204 No Content\r\nX-Up: 1\r\n\r\n"),
        case("304 with a length", GET, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 99\r\n\r\n"),
        case("404 from upstream", GET, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"),
        case(
            "upstream says close",
            GET,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        ),
        case(
            "upstream connection-named field",
            GET,
            "HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nhi",
        ),
        case("client asks to close", "GET {P}/c HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", OK),
        case("no route", "GET /nowhere HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("health", "GET /health HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("above the root", "GET {P}/../../x HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("bare prefix redirected, query kept", "GET {R}?x=1&y=%2F HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("bare prefix redirected, head", "HEAD {R} HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case(
            "bare prefix redirected, a post with a body",
            "POST {R} HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            OK,
        ),
        case("bare prefix redirected after dot segments", "GET {P}/../{R} HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        case("slash form of a redirecting prefix", "GET {R}/?x=1 HTTP/1.1\r\nHost: a.test\r\n\r\n", OK),
        nothing_sent(
            "bad chunk size in the request body",
            "POST {P}/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
            OK,
        ),
        nothing_sent(
            "chunk size overflow",
            "POST {P}/up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
            OK,
        ),
        refused(
            "answer with two different lengths",
            GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
        ),
        refused(
            "answer with a signed length",
            GET,
            "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi",
        ),
        refused(
            "answer with an obfuscated coding",
            GET,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ),
        // Chunked wins (RFC 9112 §6.3), and that upstream connection is
        // not reused.
        case(
            "answer with length and chunked",
            GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ),
        refused(
            "answer head with bare LF",
            GET,
            "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
        ),
        refused(
            "answer with a bad chunk size",
            GET,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
        ),
        refused("an endless answer head", GET, ENDLESS_HEAD),
        refused(
            "switching protocols to a plain request",
            GET,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ),
        case(
            "early hints then the answer",
            GET,
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        ),
        case(
            "websocket upgrade, then frames both ways",
            "GET {P}/ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nKeep-Alive: timeout=5\r\n\r\n\x01\x02hi",
        ),
        case(
            "upgrade refused by the upstream",
            "GET {P}/ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\nnope",
        ),
        case("an HTTP/1.0 answer", GET, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
        case("an HTTP/1.0 close-delimited answer", GET, "HTTP/1.0 200 OK\r\n\r\nall of it"),
        case("a head cut short by the upstream's close", GET, "HTTP/1.1 200 OK\r\nContent-Le"),
        case("nothing but the close", GET, ""),
    ]
}

/// One upstream for one case: reads one request (its head and its body,
/// framed by length or chunked), records the bytes, answers and closes.
struct Scripted {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(answer: &'static str) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let request = read_request(&mut sock).await;
                    record.lock().expect("record").extend_from_slice(&request);
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                    let mut rest = [0u8; 1024];
                    while matches!(
                        tokio::time::timeout(patience(), sock.read(&mut rest)).await,
                        Ok(Ok(n)) if n > 0
                    ) {}
                });
            }
        });
        Scripted {
            addr,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().expect("record").clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request off `sock`: the head, then a `Content-Length` body
/// or a chunked one up to its last chunk (both proxies frame it anew,
/// without trailers).
async fn read_request(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
            if let Some(end) = head_end {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let body = &got[end..];
                if head.contains("transfer-encoding: chunked") {
                    if body.ends_with(b"0\r\n\r\n") {
                        return;
                    }
                } else {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        return;
                    }
                }
            }
            match sock.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(patience(), read).await;
    dechunk(&got)
}

/// Sends `request` and reads what comes back until the response ends: by
/// its length, its last chunk, or the connection closing. `Date` values
/// are blanked.
async fn exchange(proxy: SocketAddr, request: &[u8]) -> Vec<u8> {
    let head_request = request.starts_with(b"HEAD ");
    let mut sock = TcpStream::connect(proxy).await.expect("connect");
    sock.write_all(request).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if response_complete(&got, head_request) {
                return;
            }
            match sock.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(patience(), read).await;
    dechunk(&blank_date(&got))
}

/// A chunked body's data with one chunk per message: where a body is cut
/// into chunks depends on how reads fell, and means nothing.
fn dechunk(message: &[u8]) -> Vec<u8> {
    let Some(end) = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
    else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..end]).to_ascii_lowercase();
    if !head.contains("transfer-encoding: chunked") {
        return message.to_vec();
    }
    let mut data = Vec::new();
    let mut rest = &message[end..];
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return message.to_vec();
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            return message.to_vec();
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        if rest.len() < size + 2 {
            return message.to_vec();
        }
        data.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    let mut out = message[..end].to_vec();
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out.extend_from_slice(rest);
    out
}

fn response_complete(got: &[u8], head_request: bool) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return false;
    };
    if got.starts_with(b"HTTP/1.1 1") && !got.starts_with(b"HTTP/1.1 101") {
        // An interim answer: the final one follows.
        return response_complete(&got[end..], head_request);
    }
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let body = &got[end..];
    if head.contains("connection: close") {
        return false; // read to the close
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 204 || status == 304 || head_request {
        return true;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(len) => body.len() >= len,
        None => false,
    }
}

fn blank_date(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("date:") {
            out.push_str("Date: -\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// The case's request for its routes (`/c<i>`, `/s<i>` which strips its
/// prefix, and `/r<i>` which redirects its bare prefix).
fn request_for(case: &Case, i: usize) -> Vec<u8> {
    case.request
        .replace("{P}", &format!("/c{i}"))
        .replace("{S}", &format!("/s{i}"))
        .replace("{R}", &format!("/r{i}"))
        .into_bytes()
}

/// Both proxies and one upstream per case for each.
struct Side {
    proxy: Proxy,
    upstreams: Vec<Scripted>,
}

async fn side(cases: &[Case], fast: &str) -> Side {
    let mut upstreams = Vec::new();
    let mut yaml = String::from("routes:\n");
    for (i, c) in cases.iter().enumerate() {
        let up = Scripted::start(c.response).await;
        yaml.push_str(&format!(
            "  - {{path: /c{i}, upstream: '{}'}}\n  - {{path: /s{i}, upstream: '{}', strip_prefix: true}}\n  - {{path: /r{i}, upstream: '{}', redirect_bare_prefix: true}}\n",
            up.addr, up.addr, up.addr
        ));
        upstreams.push(up);
    }
    let proxy = Proxy::start_with(&yaml, &["--fast-path", fast, "--access-log", "off"]).await;
    Side { proxy, upstreams }
}

fn show(bytes: &[u8]) -> String {
    let text = bytes.escape_ascii().to_string();
    match text.char_indices().nth(2000) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], bytes.len()),
        None => text,
    }
}

fn status_of(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_answers_as_pingora_does_or_refuses() {
    let cases = corpus();
    let fast = side(&cases, "on").await;
    let slow = side(&cases, "off").await;
    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let request = request_for(case, i);
        let got_fast = exchange(fast.proxy.addr, &request).await;
        let got_slow = exchange(slow.proxy.addr, &request).await;
        // Each upstream records a request before it answers, so both
        // records are whole once the clients have their answers.
        let up_fast = fast.upstreams[i].received();
        let up_slow = slow.upstreams[i].received();
        let same = got_fast == got_slow && up_fast == up_slow;
        let outcome = match case.expect {
            Expect::Same if same => None,
            Expect::Same => Some("differs"),
            Expect::FastSendsNothing if got_fast == got_slow && up_fast.is_empty() => None,
            Expect::FastSendsNothing => Some("differs, or the fast path sent something"),
            Expect::FastRefuses => {
                let status = status_of(&got_fast);
                let closed = String::from_utf8_lossy(&got_fast)
                    .to_ascii_lowercase()
                    .contains("connection: close");
                if (status >= 400 || got_fast.is_empty()) && (closed || got_fast.is_empty()) {
                    None
                } else {
                    Some("the fast path did not refuse")
                }
            }
        };
        if let Some(what) = outcome {
            problems.push(format!(
                "{}: {what}\n  fast client:   {}\n  pingora client: {}\n  fast upstream:   {}\n  pingora upstream: {}",
                case.name,
                show(&got_fast),
                show(&got_slow),
                show(&up_fast),
                show(&up_slow)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
