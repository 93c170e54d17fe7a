"""How numbers are written in the report and the progress log, in one place
so that every row reads the same way."""

from __future__ import annotations


def fmt_rps(x: float) -> str:
    return f"{x:,.0f} req/s"


def fmt_ms(x: float) -> str:
    if x != x:
        return "?"
    return f"{x * 1000:.0f} µs" if x < 1 else f"{x:.2f} ms"


def fmt_mib(kb: float) -> str:
    return f"{kb / 1024:.1f} MiB"


def ratio(a: float, b: float) -> str:
    if not b or a != a or b != b:
        return "—"
    return f"{a / b:.2f}×"


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**NO**")
