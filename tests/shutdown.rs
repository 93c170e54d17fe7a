//! Shutdown that fits Kubernetes, end to end: SIGTERM turns readiness 503
//! while traffic is still served for the drain delay, then the listeners
//! close, in-flight requests get up to the drain timeout, and the process
//! exits 0. SIGINT stops at once.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::{client, routes_yaml, Proxy, Upstream};
use futures_util::StreamExt;
use nix::sys::signal::Signal;

async fn status(url: String) -> Option<u16> {
    client()
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// SIGTERM: `/ready` and the main `/health` answer 503 at once while routes
/// still serve; after `--drain-delay` the listener refuses connections; an
/// in-flight stream still finishes; then the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_then_exits_zero() {
    let up = Upstream::start("s").await;
    let mut proxy = Proxy::start_with(
        &routes_yaml(&[("/s", &up.host_port())]),
        &["--drain-delay", "3", "--drain-timeout", "15"],
    )
    .await;
    let tx = up.arm_stream().await;
    tx.send("one\n".into()).await.unwrap();
    let resp = client().get(proxy.url("/s/stream")).send().await.unwrap();
    let mut body = resp.bytes_stream();
    assert_eq!(&body.next().await.unwrap().unwrap()[..], b"one\n");

    proxy.signal(Signal::SIGTERM);
    let term = Instant::now();
    support::eventually("admin /ready 503", || {
        status(proxy.admin_url("/ready")).map_ok_503()
    })
    .await;
    assert_eq!(status(proxy.url("/health")).await, Some(503));
    assert_eq!(
        status(proxy.admin_url("/health")).await,
        Some(200),
        "liveness stays 200"
    );
    // Still serving during the drain delay, on new connections too.
    assert_eq!(status(proxy.url("/s/x")).await, Some(200));
    assert!(
        term.elapsed() < Duration::from_secs(3),
        "checks ran inside the drain delay"
    );

    // Then the listener closes: new connections are refused.
    let addr = proxy.addr;
    support::eventually("main listener closed", || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        term.elapsed() >= Duration::from_secs(3),
        "closed before the drain delay: {:?}",
        term.elapsed()
    );

    // The in-flight stream is still alive and finishes.
    tx.send("two\n".into()).await.unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"two\n");
    let exit = proxy.wait_exit().await;
    assert_eq!(exit.code(), Some(0), "{}", proxy.logs());
    assert!(
        term.elapsed() < Duration::from_secs(10),
        "exited as soon as drained: {:?}",
        term.elapsed()
    );
}

/// A request still running at the drain timeout is cut and the process
/// exits at once, 0 as the interface promises, saying how many were cut:
/// never Pingora's stock 300 s grace period.
#[tokio::test(flavor = "multi_thread")]
async fn drain_timeout_bounds_the_wait() {
    let up = Upstream::start("s").await;
    let mut proxy = Proxy::start_with(
        &routes_yaml(&[("/s", &up.host_port())]),
        &["--drain-delay", "0", "--drain-timeout", "1"],
    )
    .await;
    let tx = up.arm_stream().await;
    tx.send("one\n".into()).await.unwrap();
    let resp = client().get(proxy.url("/s/stream")).send().await.unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();

    let term = Instant::now();
    proxy.signal(Signal::SIGTERM);
    let exit = proxy.wait_exit().await;
    assert_eq!(exit.code(), Some(0), "{}", proxy.logs());
    assert!(proxy.logs().contains("requests cut"), "{}", proxy.logs());
    let took = term.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "did not wait for the drain timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        proxy.logs().contains("drain timeout reached"),
        "{}",
        proxy.logs()
    );
    drop(tx);
}

/// SIGINT stops at once, in-flight requests or not.
#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_at_once() {
    let up = Upstream::start("s").await;
    let mut proxy = Proxy::start(&routes_yaml(&[("/s", &up.host_port())])).await;
    let tx = up.arm_stream().await;
    tx.send("one\n".into()).await.unwrap();
    let resp = client().get(proxy.url("/s/stream")).send().await.unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();

    let int = Instant::now();
    proxy.signal(Signal::SIGINT);
    let exit = proxy.wait_exit().await;
    // The default drain delay is 5 s; SIGINT does not wait for it.
    assert!(
        int.elapsed() < Duration::from_secs(3),
        "{:?}",
        int.elapsed()
    );
    assert_eq!(exit.code(), Some(0));
    drop(tx);
}

trait OkIs503 {
    async fn map_ok_503(self) -> Option<()>;
}

impl<F: std::future::Future<Output = Option<u16>>> OkIs503 for F {
    async fn map_ok_503(self) -> Option<()> {
        (self.await == Some(503)).then_some(())
    }
}
