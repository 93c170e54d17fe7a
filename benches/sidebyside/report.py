"""The report: a markdown header saying how and where it ran, the table of
metrics with their goals (one column pair per Switchyard variant when there
are any), and the per-round details behind each row."""

from __future__ import annotations

import shlex
import sys
import time
from typing import TYPE_CHECKING

from .common import CONNECTIONS
from .configs import NGINX_ACCESS_LOG
from .fmt import fmt_mib, fmt_ms, fmt_rps, met, ratio
from .stats import QUIET, med

if TYPE_CHECKING:
    from .bench import Bench


class Table:
    """Rows of nginx | Switchyard | ratio, then per variant its cell and its
    ratio to nginx ("not measured" outside the throughput rounds), then the
    goal and whether Switchyard meets it."""

    def __init__(self, variants: list[str]) -> None:
        self.variants = variants
        self.rows: list[str] = []

    def header(self) -> list[str]:
        cols = ["metric", "nginx", "Switchyard", "Switchyard / nginx"]
        for v in self.variants:
            cols += [v, f"{v} / nginx"]
        cols += ["goal", "met"]
        return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def row(self, metric: str, ng: str, sy: str, rat: str, goal: str, ok: bool | None,
            variants: dict[str, tuple[str, str]] | None = None) -> None:
        cells = [metric, ng, sy, rat]
        for v in self.variants:
            cells += variants[v] if variants else ["not measured", "—"]
        cells += [goal, met(ok)]
        self.rows.append("| " + " | ".join(cells) + " |")


def _variant_cells(b: Bench, key: str, fmt, nginx_value: float, with_ratio: bool = True) -> dict:
    """Each variant's `key` formatted, with its ratio to nginx's value."""
    out = {}
    for v in b.variants:
        x = b.res[f"{v.name}.{key}"]
        out[v.name] = (fmt(x), ratio(x, nginx_value) if with_ratio else "—")
    return out


def _quiet_label(b: Bench, c: int) -> str:
    R = b.res
    return (f"quiet runs: nginx {R[f'nginx.c{c}.used']}, Switchyard {R[f'switchyard.c{c}.used']}"
            + "".join(f", {v.name} {R[f'{v.name}.c{c}.used']}" for v in b.variants))


def _throughput_rows(b: Bench, t: Table) -> None:
    R = b.res
    for c in CONNECTIONS:
        n, s = R[f"nginx.c{c}.rps"], R[f"switchyard.c{c}.rps"]
        t.row(f"Throughput, {c} connections (median; {_quiet_label(b, c)})", fmt_rps(n), fmt_rps(s), ratio(s, n),
              "≥ 1.1× nginx", s >= 1.1 * n, _variant_cells(b, f"c{c}.rps", fmt_rps, n))
    for c in CONNECTIONS:
        for pq in ("p50", "p99"):
            n, s = R[f"nginx.c{c}.{pq}"], R[f"switchyard.c{c}.{pq}"]
            t.row(f"Latency {pq}, {c} connections (median; {_quiet_label(b, c)})", fmt_ms(n), fmt_ms(s), ratio(s, n),
                  "≤ nginx" if pq == "p99" else "—", (s <= n) if pq == "p99" else None,
                  _variant_cells(b, f"c{c}.{pq}", fmt_ms, n))

    def errors(name: str) -> int:
        return sum(R[f"{name}.c{c}.errors"] + R[f"{name}.c{c}.non2xx"] for c in CONNECTIONS)

    n, s = errors("nginx"), errors("switchyard")
    t.row("Socket errors + non-2xx, all throughput runs (sum)", str(n), str(s), "—", "0 (sanity)", s == 0,
          {v.name: (str(errors(v.name)), "—") for v in b.variants})


def _memory_rows(b: Bench, t: Table) -> None:
    R = b.res
    n, s = R["nginx.idle_rss"], R["switchyard.idle_rss"]
    t.row(f"RSS idle (nginx: master + {R['nginx.nprocs'] - 1} workers)", fmt_mib(n), fmt_mib(s), ratio(s, n),
          "—", None, _variant_cells(b, "idle_rss", fmt_mib, n))
    n, s = R["nginx.load_rss"], R["switchyard.load_rss"]
    t.row("RSS under load (max of 200 ms samples, first 64-conn run)", fmt_mib(n), fmt_mib(s), ratio(s, n),
          "≤ nginx", s <= n, _variant_cells(b, "load_rss", fmt_mib, n))
    n, s = R["nginx.peak_rss"], R["switchyard.peak_rss"]
    t.row("RSS peak over all throughput runs (incl. 256 conns)", fmt_mib(n), fmt_mib(s), ratio(s, n), "≤ nginx",
          s <= n, _variant_cells(b, "peak_rss", fmt_mib, n))
    ch = R["switchyard.churn"]
    growth = (ch["after"] - ch["before"]) / ch["before"] if ch["before"] else float("nan")
    t.row(f"RSS before → after {ch['n']} swaps (no load)", "not measured",
          f"{fmt_mib(ch['before'])} → {fmt_mib(ch['after'])} ({growth * 100:+.1f} %)", "—",
          "flat (growth ≤ 10 %)", ch["n"] == b.args.churn and growth <= 0.10)


def _cpu_rows(b: Bench, t: Table) -> None:
    R = b.res

    def us(x: float) -> str:
        return f"{x:.1f} µs"

    for c in CONNECTIONS:
        n, s = R[f"nginx.c{c}.cpu"], R[f"switchyard.c{c}.cpu"]
        t.row(f"CPU per request, {c} connections (median; {_quiet_label(b, c)})", us(n), us(s), ratio(s, n),
              "≤ nginx", s <= n, _variant_cells(b, f"c{c}.cpu", us, n))


def _wrk_errors(r: dict) -> str:
    sk = r["sock"]
    return (f"{r['errors']} socket errors (connect {sk['connect']}, read {sk['read']}, write {sk['write']}, "
            f"timeout {sk['timeout']}), {r['non2xx']} non-2xx")


def _reload_rows(b: Bench, t: Table) -> None:
    a, R = b.args, b.res
    rn, rs = R["nginx.reload"], R["switchyard.reload"]
    g0, g1, swaps, last_applied = R["switchyard.reload_gen"]
    t.row(f"{a.reloads} reloads under load (wrk -c64 -d{a.reload_duration:g}s)",
          f"{_wrk_errors(rn)}; {rn['rps']:,.0f} req/s", f"{_wrk_errors(rs)}; {rs['rps']:,.0f} req/s", "—",
          "0 errors, 0 non-2xx", rs["errors"] == 0 and rs["non2xx"] == 0)
    t.row(f"After {swaps} ConfigMap swaps under load: the last file serving; generations applied", "—",
          f"{'last file serving' if last_applied else 'LAST FILE NOT SERVING'}; generation {g0} → {g1} "
          f"(+{g1 - g0}; swaps landing together are applied as one)", "—",
          "the last file serving", last_applied and 0 < g1 - g0 <= swaps)
    n, s = R["nginx.s2s"], R["switchyard.s2s"]
    t.row(f"Swap-to-serving, median of {len(s)} (new route answers 200)", fmt_ms(med(n) * 1000),
          fmt_ms(med(s) * 1000), ratio(med(s), med(n)), "< 20 ms", med(s) * 1000 < 20)
    t.row(f"Swap-to-serving, max of {len(s)}", fmt_ms(max(n) * 1000), fmt_ms(max(s) * 1000),
          ratio(max(s), max(n)), "< 250 ms (benches/README.md)", max(s) * 1000 < 250)


def _big_table_row(b: Bench, t: Table) -> None:
    a, R = b.args, b.res
    sr = R["switchyard.big_ratio"]
    if "nginx.big_ratio" in R:
        nr = R["nginx.big_ratio"]
        ncell = f"{nr * 100:.1f} % of 10 routes ({(1 - nr) * 100:+.1f} % cost)"
    else:
        ncell = f"skipped: {R.get('ng10k.skipped', '?')}"
    bq = "; ".join(f"{nm} {R[k][0]} vs {R[k][1]}" for nm, k in (("Switchyard", "switchyard.big_used"),
                                                                 ("nginx", "nginx.big_used")) if k in R)
    t.row(f"Throughput with {a.big_routes} routes vs 10 routes (64 conns, median; quiet runs: {bq})", ncell,
          f"{sr * 100:.1f} % of 10 routes ({(1 - sr) * 100:+.1f} % cost)", "—", "cost < 5 %", 1 - sr < 0.05)


def _setup_lines(b: Bench, info: dict) -> list[str]:
    """How the proxies were configured and loaded, and how quiet the machine was."""
    a = b.args
    logs = (f"access logs on (nginx: `{NGINX_ACCESS_LOG}`; Switchyard: `--access-log on`, its stderr to a file)"
            if a.access_log_on else "access log off")
    order = ", ".join(["nginx", "Switchyard", *(v.name for v in b.variants)])
    if a.nginx_cpu_affinity:
        logs += "; nginx workers held to CPUs (`worker_cpu_affinity auto`)"
    out = [
        f"- both proxies: {a.workers} workers/threads, {logs}, loopback only; one shared upstream "
        f"(nginx, 1 worker, fixed 20-byte body); load: `wrk -t{a.wrk_threads} -c{{64,256}} -d{a.duration:g}s "
        f"--latency http://127.0.0.1:PORT/app1/x`, {a.rounds} round(s) alternating {order} "
        f"after a {a.warmup:g} s warm-up each",
    ]
    if a.switchyard_arg or b.variants:
        out.append(f"- Switchyard: `switchyard serve --config … --listen … --admin-listen … "
                   f"{shlex.join(b.sy.tuning())}`")
    for v in b.variants:
        out.append(f"- variant {v.name}: `switchyard serve … {shlex.join(v.tuning())}`; measured in the warm-up "
                   "and the throughput rounds only")
    out += [
        f"- wrk, the upstream and the proxy under test all share the same {info['nproc']} CPUs: the numbers "
        "compare the two proxies under identical contention, they are not either one's ceiling",
        f"- medians are over the *quiet* runs, those during which other processes used < {QUIET} cores, or "
        "over all runs when none was quiet; `k/n` says how many were",
        f"- other processes on the machine used a median of {med(b.wrk.others):.2f} and at most "
        f"{max(b.wrk.others, default=0):.2f} cores during the measured runs (waited {b.wrk.quiet_waited:.0f} s "
        f"in all for a quiet machine before runs)"
        + (" — **the machine was not idle: treat the throughput and latency rows with caution**"
           if max(b.wrk.others, default=0) > 0.25 else ""),
    ]
    return out


def _header(b: Bench, info: dict, started: float) -> list[str]:
    return [
        "# Switchyard vs nginx",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}, took "
        f"{(time.monotonic() - b.t_start) / 60:.1f} min.",
        "",
        "```",
        "python3 " + shlex.join(sys.argv),
        "```",
        "",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem']} RAM, kernel {info['kernel']}",
        f"- {info['nginx']}; {info['wrk']}; {info['switchyard']}; python {info['python']}",
        f"- Switchyard binary: {b.binary_info}",
        *_setup_lines(b, info),
    ]


def _round_details(b: Bench) -> list[str]:
    """Every throughput run, and where the CPU went during them."""
    names = ["nginx", "switchyard", *(v.name for v in b.variants)]
    out = []
    for c in CONNECTIONS:
        for name in names:
            rs = b.runs[(name, c)]
            out.append(f"- {name} c={c} per round: " + ", ".join(
                f"{r['rps']:,.0f} req/s p99 {fmt_ms(r['p99'])} ({r['errors']} err, {r['non2xx']} non-2xx, "
                f"others {r['cores']['other']:.2f} cores)" for r in rs))
    for c in CONNECTIONS:
        for name in names:
            rs = b.runs[(name, c)]
            cores = {k: med([r["cores"][k] for r in rs]) for k in ("proxy", "upstream", "wrk")}
            out.append(f"- CPU cores busy during {name} c={c} runs (median): {name} {cores['proxy']:.2f}, "
                       f"upstream {cores['upstream']:.2f}, wrk {cores['wrk']:.2f}")
    return out


def _memory_details(b: Bench) -> list[str]:
    a, R = b.args, b.res
    ch = R["switchyard.churn"]
    out = [f"- PSS (proportional, shared pages split) idle: nginx {fmt_mib(R['nginx.idle_pss'])}, "
           f"Switchyard {fmt_mib(R['switchyard.idle_pss'])}; first 64-conn run (max): nginx "
           f"{fmt_mib(R['nginx.load_pss'])}, Switchyard {fmt_mib(R['switchyard.load_pss'])}; peak: nginx "
           f"{fmt_mib(R['nginx.peak_pss'])}, Switchyard {fmt_mib(R['switchyard.peak_pss'])}"]
    out += [f"- PSS of {v.name}: idle {fmt_mib(R[f'{v.name}.idle_pss'])}, first 64-conn run (max) "
            f"{fmt_mib(R[f'{v.name}.load_pss'])}, peak {fmt_mib(R[f'{v.name}.peak_pss'])}" for v in b.variants]
    out.append(f"- {ch['n']} swaps: on a fresh Switchyard process warmed up with {a.warmup:g} s of load, each "
               f"swap waited for via /routes; took {ch['secs']:.1f} s, generation {ch['gen'][0]} → "
               f"{ch['gen'][1]}; its log: {ch['log_success']} successful reloads, {ch['log_failure']} failed, "
               f"{ch['log_warn_error']} WARN/ERROR lines")
    out.append("- RSS trend over the swaps (swaps: RSS): " + ", ".join(
        f"{k}: {fmt_mib(v)}" for k, v in ch["trend"]))
    out.append(f"- the main Switchyard process at the end (after every phase, incl. the 10k table): RSS "
               f"{fmt_mib(R['switchyard.main_rss_end'])}")
    return out


def _reload_details(b: Bench) -> list[str]:
    a, R = b.args, b.res
    out = [f"- nginx after {a.reloads} reloads under load: {R['nginx.reload_nprocs_end']} processes, "
           f"RSS {fmt_mib(R['nginx.reload_rss_end'])} right after the run; `nginx -s reload` command "
           f"median {R['nginx.reload_cmd_ms']:.1f} ms; failed reload commands: "
           f"{len(R['nginx.reload_failures'])}",
           "- swap-to-serving samples (ms): Switchyard "
           + ", ".join(f"{x * 1000:.1f}" for x in R["switchyard.s2s"]) + "; nginx "
           + ", ".join(f"{x * 1000:.1f}" for x in R["nginx.s2s"]),
           f"- swap-to-serving: Switchyard polled over one keep-alive connection "
           f"(reconnects: {R['switchyard.s2s_reconnects']}); nginx over a fresh connection per poll; "
           f"nginx reloads whose old workers were still there 15 s later: {R['nginx.s2s_unsettled']}"]
    for name in ("switchyard", "nginx"):
        if f"{name}.big_runs" in R:
            s, l, so, lo = R[f"{name}.big_runs"]
            out.append(f"- {name} 10 routes vs {a.big_routes}, per round (others' cores): "
                       + ", ".join(f"{x:,.0f} ({o:.2f})" for x, o in zip(s, so)) + " vs "
                       + ", ".join(f"{x:,.0f} ({o:.2f})" for x, o in zip(l, lo)) + " req/s")
    out.append(f"- switching to the {a.big_routes}-route table: Switchyard ConfigMap swap applied in "
               f"{R['sy10k.load_s'] * 1000:.0f} ms, RSS with it {fmt_mib(R['switchyard.big_rss'])}"
               + (f"; nginx -s reload until the new workers alone served {R['ng10k.load_s'] * 1000:.0f} ms, "
                  f"RSS with it {fmt_mib(R['nginx.big_rss'])}"
                  if "ng10k.load_s" in R else f"; nginx {R.get('ng10k.skipped')}"))
    return out


def _log_details(b: Bench) -> list[str]:
    lg = b.res["switchyard.log"]
    access = f" (and {lg['access']:,} access-log lines)" if b.args.access_log_on else ""
    out = [f"- Switchyard log: {lg['lines']} lines{access}; reloads success {lg['reload_success']}, "
           f"failure {lg['reload_failure']}, unchanged {lg['reload_unchanged']}; WARN/ERROR lines: "
           f"{len(lg['warn_error'])}, by phase: {lg['by_phase'] or 'none'}; "
           f"{lg['near_wrk_end']} of them within 1.5 s before a wrk run ended (wrk closing its "
           "connections with requests in flight)"]
    for n, k in lg["patterns"][:8]:
        out.append(f"  - {n} × `{k.strip()[:300]}`")
    ng = b.res["nginx.log"]
    out.append(f"- nginx error.log warn-or-worse lines: {len(ng['lines'])}")
    for n, k in ng["patterns"][:8]:
        out.append(f"  - {n} × `{k.strip()[:300]}`")
    return out


def render(b: Bench, info: dict, started: float) -> str:
    t = Table([v.name for v in b.variants])
    _throughput_rows(b, t)
    _memory_rows(b, t)
    _cpu_rows(b, t)
    _reload_rows(b, t)
    _big_table_row(b, t)
    out = [*_header(b, info, started), "", *t.header(), *t.rows, "", "## Details", ""]
    out += _round_details(b) + _memory_details(b) + _reload_details(b) + _log_details(b)
    out += [f"- {p}" for p in b.problems]
    return "\n".join(out) + "\n"
