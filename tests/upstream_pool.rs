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
}

impl Scripted {
    async fn start(after: After, answer: fn(usize, usize) -> Vec<u8>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let (tx, closed) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let tx = tx.clone();
                tokio::spawn(serve(sock, n, after, answer, tx));
            }
        });
        Scripted {
            addr,
            connections,
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
        if sock.write_all(&answer(connection, request)).await.is_err() {
            return;
        }
        if let After::CloseAfterFirst = after {
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
