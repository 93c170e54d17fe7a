//! Criterion benchmarks for the routing table: lookup and compile time at
//! 10, 1 000, 10 000 and 40 000 routes (about the most a routes file can
//! hold: 40 000 of these are ~210 000 YAML nodes, under the loader's
//! `MAX_NODES`), and the per-request cost of taking
//! a snapshot of the shared table, and the per-request cost of judging a
//! request head before Pingora parses it (`head::scan`).
//!
//! `cargo bench --bench routes`; results in benches/README.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard_routes::{load, normalize_path, Table};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 40_000];

/// `n` routes shaped like a busy dev proxy: `/team{t}/app{i}` two segments
/// deep, every 10th limited to a host, plus a root route.
fn routes_file(n: usize) -> String {
    let mut s = String::with_capacity(n * 64);
    s.push_str("routes:\n  - path: /\n    upstream: 127.0.0.1:9\n");
    for i in 1..n {
        s.push_str(&format!(
            "  - path: /team{}/app{i}\n    upstream: 10.0.{}.{}:3000\n",
            i % 50,
            (i / 250) % 250,
            i % 250
        ));
        if i % 10 == 0 {
            s.push_str(&format!("    host: dev{}.example.com\n", i % 7));
        }
    }
    s
}

fn table(n: usize) -> Table {
    load("bench.yaml", &routes_file(n)).unwrap()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    for n in SIZES {
        let t = table(n);
        let hit = format!("/team{}/app{}/static/js/main.4f2a.js", (n / 2) % 50, n / 2);
        g.bench_with_input(BenchmarkId::new("hit_5_segments", n), &hit, |b, p| {
            b.iter(|| {
                black_box(t.lookup(Some("dev3.example.com:8080"), black_box(p))).map(|r| r.index)
            })
        });
        g.bench_with_input(
            BenchmarkId::new("miss_to_root", n),
            &"/nothing/here",
            |b, p| b.iter(|| black_box(t.lookup(Some("localhost"), black_box(p))).map(|r| r.index)),
        );
    }
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize_path");
    g.bench_function("plain", |b| {
        b.iter(|| normalize_path(black_box("/team1/app2/static/js/main.js")).map(|p| p.len()))
    });
    g.bench_function("dot_segments", |b| {
        b.iter(|| normalize_path(black_box("/team1/app2/../app3/./x")).map(|p| p.len()))
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in SIZES {
        let text = routes_file(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| load("bench.yaml", black_box(text)).unwrap().len())
        });
    }
    g.finish();
}

/// What each request pays to pin the table it will use for its whole life.
fn snapshot(c: &mut Criterion) {
    let shared = Arc::new(ArcSwap::from_pointee(table(1_000)));
    let mut g = c.benchmark_group("snapshot");
    g.bench_function("load_full", |b| {
        b.iter(|| black_box(shared.load_full()).len())
    });
    g.bench_function("load_full_then_lookup", |b| {
        b.iter(|| {
            let t = shared.load_full();
            black_box(
                t.lookup(None, black_box("/team10/app500/x"))
                    .map(|r| r.index),
            )
        })
    });
    g.finish();
}

/// What each request pays for being read by `Front` before Pingora: one
/// `httparse` pass plus the framing and target checks, on a head like
/// wrk's and on a browser-sized one.
fn head_scan(c: &mut Criterion) {
    let small = b"GET /app1/x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec();
    let browser = concat!(
        "GET /team1/app2/static/js/main.js?v=3 HTTP/1.1\r\n",
        "Host: dev.example.com\r\n",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n",
        "Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n",
        "Referer: http://dev.example.com/team1/app2/\r\nConnection: keep-alive\r\n",
        "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n",
        "Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\r\n",
    )
    .as_bytes()
    .to_vec();
    let mut g = c.benchmark_group("head_scan");
    for (name, head) in [("wrk", small), ("browser", browser)] {
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| switchyard_server::head::scan(black_box(&head), 32 * 1024))
        });
    }
    g.finish();
}

criterion_group!(benches, lookup, normalize, compile, snapshot, head_scan);
criterion_main!(benches);
