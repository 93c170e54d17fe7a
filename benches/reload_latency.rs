//! Swap-to-serving latency: how long after the kubelet's `..data` rename
//! a newly added route answers through the real binary.
//!
//! `cargo bench --bench reload_latency` (env `SWAPS`, default 50). Each
//! round adds one route with a ConfigMap update, stopped right after the
//! atomic switch, then polls the new route every 0.5 ms until it answers
//! 200. Prints median, p90 and max; see benches/README.md for results.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::kubelet::{ConfigMapDir, KubeletOrder, Step};
use support::{routes_yaml, Proxy, RawConn, Upstream};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not,
    // and then a 3-swap run checks that the bench still works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let swaps: usize = std::env::var("SWAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 50 } else { 3 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(swaps));
}

async fn run(swaps: usize) {
    let up = Upstream::start("up").await;
    let hp = up.host_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("routes");
    std::fs::create_dir(&volume).expect("volume");
    let first = routes_yaml(&[("/swap0", &hp)]);
    let mut cm = ConfigMapDir::create(&volume, &[("routes.yaml", first.as_bytes())]).expect("cm");
    let proxy = Proxy::spawn_in(dir, cm.file("routes.yaml"), &["--access-log", "off"]).await;
    let mut conn = RawConn::connect(proxy.addr).await;

    let mut samples = Vec::with_capacity(swaps);
    for i in 1..=swaps {
        let route = format!("/swap{i}");
        let mut routes: Vec<(String, String)> =
            (0..=i).map(|j| (format!("/swap{j}"), hp.clone())).collect();
        routes.truncate(i + 1);
        let pairs: Vec<(&str, &str)> = routes
            .iter()
            .map(|(p, u)| (p.as_str(), u.as_str()))
            .collect();
        let yaml = routes_yaml(&pairs);
        let mut update = cm
            .begin_update(&[("routes.yaml", yaml.as_bytes())], KubeletOrder::Current)
            .expect("begin")
            .expect("content differs");
        update.run_through(Step::SwitchData).expect("switch");
        let switched = Instant::now();
        loop {
            let r = conn.get("bench", &route).await;
            if r.status == 200 {
                break;
            }
            assert!(
                switched.elapsed() < Duration::from_secs(10),
                "{route} never served"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(switched.elapsed());
        update.finish().expect("finish");
        proxy.wait_generation(i as u64 + 1).await;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "reload_latency: {} ConfigMap swaps, ..data rename -> new route answers 200",
        samples.len()
    );
    println!(
        "  median {:.2} ms   p90 {:.2} ms   max {:.2} ms   min {:.2} ms",
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(samples[samples.len() - 1]),
        ms(samples[0])
    );
}
