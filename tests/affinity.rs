//! `--cpu-affinity`: each proxy shard's thread held to a CPU of its own
//! (`on`), or left where the scheduler puts it (`off`). Judged from
//! `/proc/<pid>/task/*/status`, where the kernel lists the CPUs each thread
//! of the proxy may run on. The proxies here run 2 shards (`--threads 2`,
//! set by `Proxy`).

use crate::support::{eventually, routes_yaml, Proxy, RawConn, Upstream};

/// Expands a kernel CPU list (`0-2,5`) into its CPUs.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.parse().unwrap(), hi.parse().unwrap());
        cpus.extend(lo..=hi);
    }
    cpus
}

/// The `Cpus_allowed_list` of a `/proc/.../status` text.
fn allowed(status: &str) -> Vec<usize> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    cpu_list(line)
}

/// Each proxy shard thread (`proxy-N`) of `pid` by its number, with the
/// CPUs it may run on.
fn shard_threads(pid: u32) -> Vec<(usize, Vec<usize>)> {
    let mut shards = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let Some(n) = comm.trim().strip_prefix("proxy-") else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        shards.push((n.parse().unwrap(), allowed(&status)));
    }
    shards.sort();
    shards
}

/// The CPUs this test process (and so the proxy it starts) may use.
fn usable() -> Vec<usize> {
    allowed(&std::fs::read_to_string("/proc/self/status").unwrap())
}

/// Sends one request on a new connection: the kernel hands each new
/// connection to one shard's listening socket, so enough of them reach
/// every shard.
async fn one_request(proxy: &Proxy) {
    let mut conn = RawConn::connect(proxy.addr).await;
    assert_eq!(conn.get("x", "/a/").await.status, 200);
}

#[tokio::test]
async fn on_holds_each_shard_thread_to_its_own_cpu() {
    let up = Upstream::start("up").await;
    let yaml = routes_yaml(&[("/a", &up.addr.to_string())]);
    let proxy = Proxy::start_with(&yaml, &["--cpu-affinity", "on"]).await;
    let cpus = usable();
    let want: Vec<(usize, Vec<usize>)> = (0..2).map(|i| (i, vec![cpus[i % cpus.len()]])).collect();
    let pid = proxy.pid();
    // A shard pins its thread when its first connection arrives.
    let got = eventually("both shard threads held to one CPU each", || async {
        one_request(&proxy).await;
        let shards = shard_threads(pid);
        (shards == want).then_some(shards)
    })
    .await;
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test]
async fn off_leaves_shard_threads_on_every_usable_cpu() {
    let up = Upstream::start("up").await;
    let yaml = routes_yaml(&[("/a", &up.addr.to_string())]);
    let proxy = Proxy::start_with(&yaml, &["--cpu-affinity", "off"]).await;
    // Enough new connections that each shard has had its first (the
    // moment `on` pins): a shard missing all of these is vanishingly
    // unlikely.
    for _ in 0..40 {
        one_request(&proxy).await;
    }
    let cpus = usable();
    let shards = shard_threads(proxy.pid());
    assert_eq!(shards.len(), 2, "{shards:?}");
    for (n, allowed) in shards {
        assert_eq!(allowed, cpus, "proxy-{n}");
    }
}

#[test]
fn cpu_lists_expand() {
    assert_eq!(cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
    assert_eq!(cpu_list("3"), vec![3]);
}
