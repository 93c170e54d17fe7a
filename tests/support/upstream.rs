//! Real upstream servers for the tests, each on its own ephemeral port and
//! stopped when dropped.
//!
//! [`Upstream`] answers every request with a JSON echo of what it received
//! (its name, method, target and headers), and also serves
//! `[/prefix]/stream` (a body the test feeds chunk by chunk) and
//! `[/prefix]/ws` (a WebSocket echo).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

#[derive(Clone)]
struct Shared {
    name: String,
    hits: Arc<AtomicUsize>,
    stream: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

/// An echoing upstream HTTP server.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    stream: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts a server that names itself `name` in every answer.
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            name: name.to_owned(),
            hits: Arc::new(AtomicUsize::new(0)),
            stream: Arc::new(Mutex::new(None)),
        };
        let app = Router::new()
            .route("/ws", any(ws))
            .route("/{prefix}/ws", any(ws))
            .route("/stream", any(stream))
            .route("/{prefix}/stream", any(stream))
            .fallback(echo)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            addr,
            name: name.to_owned(),
            hits: shared.hits,
            stream: shared.stream,
            task,
        }
    }

    /// `127.0.0.1:PORT`, as a routes file writes it.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Arms `/stream`: the next request to it streams whatever is sent on
    /// the returned sender and ends when the sender is dropped.
    pub async fn arm_stream(&self) -> mpsc::Sender<Bytes> {
        let (tx, rx) = mpsc::channel(16);
        *self.stream.lock().await = Some(rx);
        tx
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(State(s): State<Shared>, req: Request) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "upstream": s.name,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "headers": headers,
    });
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn stream(State(s): State<Shared>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let Some(rx) = s.stream.lock().await.take() else {
        return (http::StatusCode::CONFLICT, "stream not armed").into_response();
    };
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Response::new(Body::from_stream(chunks))
}

async fn ws(State(s): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let name = s.name.clone();
    upgrade.on_upgrade(move |socket| ws_echo(socket, name))
}

async fn ws_echo(mut socket: WebSocket, name: String) {
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(t) => Message::Text(format!("{name}: {}", t.as_str()).into()),
            Message::Binary(b) => Message::Binary(b),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// A server that accepts connections and never answers.
pub struct Hanging {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Hanging {
    /// Starts it.
    pub async fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        Hanging { addr, task }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JSON an [`Upstream`] answered with.
#[derive(Debug, serde::Deserialize)]
pub struct Echo {
    pub upstream: String,
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Echo {
    /// All values of header `name`, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A listener whose accept queue is full and never drained: the kernel
/// drops further SYNs, so connecting to it hangs until the connect timeout
/// (the loopback stand-in for an unreachable host).
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: std::net::TcpListener,
    _fillers: Vec<std::net::TcpStream>,
}

impl Blackhole {
    /// Binds with a backlog of 0 and fills the queue.
    pub fn start() -> Blackhole {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        sock.bind(&any.into()).expect("bind");
        sock.listen(0).expect("listen");
        let listener: std::net::TcpListener = sock.into();
        let addr = listener.local_addr().expect("addr");
        let mut fillers = Vec::new();
        // Queue capacity is backlog + 1; connect until one no longer completes.
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
            {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        Blackhole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// A TCP server that reads a request, writes fixed bytes and closes: for
/// upstreams that answer garbage or die in the middle of a body.
pub struct RawServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RawServer {
    /// Answers every connection with `reply`, then closes it.
    pub async fn start(reply: &'static [u8]) -> RawServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        RawServer { addr, task }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
