//! The upstream pool's promises, end to end, on both request paths: a
//! connection the upstream closed while idle is never used for a request
//! that then fails, and a connection whose answer came with bytes beyond
//! its framed end is never used again (those bytes never reach a client).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::{routes_yaml, Proxy, RawConn};

/// A keep-alive upstream whose every connection answers requests with
/// `answer(connection, request)`, then does what `after` says.
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Requests received, over all connections.
    requests: Arc<AtomicUsize>,
    /// One message per connection the upstream closed of its own accord.
    closed: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy)]
enum After {
    /// Close the connection after its first answer (a Node.js dev server's
    /// idle timeout, made immediate).
    CloseAfterFirst,
    /// Keep answering.
    KeepAlive,
    /// Close the connection after its second answer.
    CloseAfterSecond,
}

impl Scripted {
    async fn start(after: After, answer: fn(usize, usize) -> Vec<u8>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let received = Arc::clone(&requests);
        let (tx, closed) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let tx = tx.clone();
                let received = Arc::clone(&received);
                tokio::spawn(serve(sock, n, after, answer, tx, received));
            }
        });
        Scripted {
            addr,
            connections,
            requests,
            closed,
            task,
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    connection: usize,
    after: After,
    answer: fn(usize, usize) -> Vec<u8>,
    closed: mpsc::UnboundedSender<()>,
    received: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut request = 0;
    loop {
        // One request: heads only (these tests send no bodies).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        buf.drain(..end);
        request += 1;
        received.fetch_add(1, Ordering::SeqCst);
        if sock.write_all(&answer(connection, request)).await.is_err() {
            return;
        }
        if matches!(
            (after, request),
            (After::CloseAfterFirst, _) | (After::CloseAfterSecond, 2)
        ) {
            let _ = sock.shutdown().await;
            drop(sock);
            let _ = closed.send(());
            return;
        }
    }
}

fn named(connection: usize, request: usize) -> Vec<u8> {
    let body = format!("conn={connection} req={request}");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The first answer of the first connection carries a second, unasked-for
/// response after its framed end (a desync attempt); all others are plain.
fn smuggling(connection: usize, request: usize) -> Vec<u8> {
    let mut out = named(connection, request);
    if (connection, request) == (1, 1) {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
    }
    out
}

/// Each connection's second answer is only a 103 before the upstream
/// closes: the request reached it.
fn hints_then_close(connection: usize, request: usize) -> Vec<u8> {
    if request == 2 {
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec();
    }
    named(connection, request)
}

/// An upstream that closed a pooled connection while it sat idle: the
/// next request still gets its answer (from a new connection), on both
/// paths, and the client's own connection stays open.
#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_the_upstream_closed_is_not_a_failed_request() {
    for fast in ["on", "off"] {
        let mut up = Scripted::start(After::CloseAfterFirst, named).await;
        let yaml = routes_yaml(&[("/app", &up.addr.to_string())]);
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let mut client = RawConn::connect(proxy.addr).await;
        let first = client.get("a.test", "/app/1").await;
        assert_eq!(
            (first.status, first.body.as_str()),
            (200, "conn=1 req=1"),
            "--fast-path {fast}"
        );
        // Wait until the upstream has closed the connection the proxy pooled.
        up.closed
            .recv()
            .await
            .expect("the upstream closed its first connection");
        for i in 2..=4 {
            let next = client.get("a.test", &format!("/app/{i}")).await;
            assert_eq!(
                next.status, 200,
                "--fast-path {fast}, request {i}: {next:?}"
            );
            assert!(next.body.ends_with("req=1"), "a fresh connection: {next:?}");
            up.closed.recv().await.expect("closed again");
        }
        assert_eq!(up.connections.load(Ordering::SeqCst), 4);
    }
}

/// Bytes an upstream sends beyond its answer's framed end are not a next
/// answer: the connection is not pooled, the client never sees them, and
/// its next request goes on a new upstream connection.
#[tokio::test(flavor = "multi_thread")]
async fn bytes_after_an_answer_end_its_connection() {
    for fast in ["on", "off"] {
        let up = Scripted::start(After::KeepAlive, smuggling).await;
        let yaml = routes_yaml(&[("/app", &up.addr.to_string())]);
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let mut client = RawConn::connect(proxy.addr).await;
        let first = client.get("a.test", "/app/1").await;
        assert_eq!(first.body, "conn=1 req=1", "--fast-path {fast}");
        let second = client.get("a.test", "/app/2").await;
        assert_ne!(
            second.body, "EVIL!",
            "--fast-path {fast}: the extra bytes reached a client"
        );
        assert_eq!(second.status, 200, "--fast-path {fast}: {second:?}");
        assert_eq!(
            second.body, "conn=2 req=1",
            "--fast-path {fast}: a new connection"
        );
        // And a clean connection is reused from then on.
        let third = client.get("a.test", "/app/3").await;
        assert_eq!(third.body, "conn=2 req=2", "--fast-path {fast}");
    }
}

/// A pooled connection the upstream closes after part of an answer (here
/// a 103) had the request: it is not sent again on a new connection (for
/// a POST that would do it twice). The fast path answers 502 after the
/// 103.
#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_closed_mid_answer_is_not_asked_again() {
    for fast in ["on", "off"] {
        let up = Scripted::start(After::CloseAfterSecond, hints_then_close).await;
        let yaml = routes_yaml(&[("/app", &up.addr.to_string())]);
        let proxy = Proxy::start_with(&yaml, &["--fast-path", fast]).await;
        let mut client = RawConn::connect(proxy.addr).await;
        let first = client.get("a.test", "/app/1").await;
        assert_eq!(first.body, "conn=1 req=1", "--fast-path {fast}");
        // On the pooled connection: a 103, then the close.
        client
            .send(b"GET /app/2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await;
        let mut answer = client.read_response().await;
        if answer.as_ref().is_some_and(|a| a.status == 103) {
            answer = client.read_response().await;
        }
        let status = answer.map(|a| a.status);
        if fast == "on" {
            assert_eq!(status, Some(502), "--fast-path on");
        } else {
            // pingora-proxy, having passed the 103 on, closes the client
            // connection without a final answer.
            assert_eq!(status, None, "--fast-path off");
        }
        assert_eq!(
            up.requests.load(Ordering::SeqCst),
            2,
            "--fast-path {fast}: the request was sent again"
        );
    }
}
