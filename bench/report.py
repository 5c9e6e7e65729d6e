"""Markdown tables, the log-log plot and ``docs/performance.md`` from the raw results."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from . import contenders as cn
from .analysis import (
    GOAL_LEAVES,
    LINEAR_FROM,
    LINEAR_SLOPE,
    LINEAR_TO,
    MEMORY_LIMIT,
    OLD_GATEWAY,
    OLD_GATEWAY_MS,
    Index,
    paired_ratio,
)
from .peers import PEERS

__all__ = [
    "machine_info",
    "markdown_report",
    "plot",
    "profile_markdown",
]

_OPS = ("write", "replace", "read", "delete", "key get", "key put", cn.GATHER)
_WHO = (
    cn.LINK,
    cn.GATEWAY,
    cn.AIO,
    *(who for peer in PEERS for who in (peer, peer + cn.NESTED)),
    cn.FLOOR,
    cn.HAND,
    cn.ETCDCTL,
)
_COLORS = {
    cn.LINK: "#1f5fbf",
    cn.GATEWAY: "#7fa7e6",
    cn.AIO: "#17becf",
    cn.FLOOR: "#222222",
    cn.HAND: "#d62728",
    cn.ETCDCTL: "#2ca02c",
    PEERS[0]: "#ff7f0e",
    PEERS[0] + cn.NESTED: "#ffbb78",
    PEERS[1]: "#9467bd",
    PEERS[1] + cn.NESTED: "#c5b0d5",
    PEERS[2]: "#8c564b",
    PEERS[2] + cn.NESTED: "#c49c94",
}


def fmt_time(seconds: float | None) -> str:
    """``0.00042`` → ``'0.42 ms'``, ``0.4521`` → ``'452 ms'``, ``13.24`` → ``'13.2 s'``."""
    if seconds is None:
        return "–"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s"


def _tick(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1000:.3g} ms"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _n(leaves: int) -> str:
    return f"{leaves:,}"


def _ordered(index: Index) -> list[str]:
    def rank(label: str) -> tuple[int, int, int]:
        m = next(index.get(label, s) for s in index.sizes if index.get(label, s))
        assert m is not None
        op = _OPS.index(m.op) if m.op in _OPS else len(_OPS)
        who = _WHO.index(m.who) if m.who in _WHO else len(_WHO)
        return (0 if m.api == "v3" else 1, op, who)

    return sorted(index.labels, key=rank)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def times_table(index: Index, repeat: int) -> str:
    """Median time per contender and size; ``(n=1)`` where fewer runs than ``repeat``."""
    rows = []
    for label in _ordered(index):
        cells = [_per_call(index, label)]
        for leaves in index.sizes:
            m = index.get(label, leaves)
            if m is not None and m.failed and not m.runs:
                cells.append("failed")
                continue
            if m is None or not m.runs:
                cells.append("–")
                continue
            text = fmt_time(index.median(label, leaves))
            text = text if len(m.runs) >= repeat else f"{text} (n={len(m.runs)})"
            cells.append(text + (" (then failed)" if m.failed else ""))
        rows.append(cells)
    return _table(["contender", *(_n(s) + " leaves" for s in index.sizes)], rows)


def _count(n: int, calls: int) -> str:
    """``n`` requests of a run of ``calls`` calls, per call."""
    return f"{n:,}" if calls <= 1 else f"{n / calls:,.3g}"


def _requests(requests: dict[str, int], calls: int) -> str:
    return ", ".join(f"{_count(n, calls)} {k}" for k, n in sorted(requests.items()))


def _per_call(index: Index, label: str) -> str:
    """``label``, with ``(per call)`` for the single-key operations and ``(per batch
    of 100)`` for the concurrent gets."""
    if label.endswith(" " + cn.GATHER):
        return f"{label} (per batch of {cn.CONCURRENT})"
    calls = max((m.calls for m in index.by_key.values() if m.label == label), default=1)
    return f"{label} (per call)" if calls > 1 else label


def requests_table(index: Index) -> str:
    """Requests the server counted for the first run of each contender (per call for
    the single-key operations)."""
    rows = []
    for label in _ordered(index):
        cells = [_per_call(index, label)]
        for leaves in index.sizes:
            m = index.get(label, leaves)
            if m is None or not m.requests:
                cells.append("–")
                continue
            total = _count(sum(m.requests.values()), m.calls)
            detail = _requests(m.requests, m.calls)
            cells.append(detail if len(m.requests) == 1 else f"{total}: {detail}")
        rows.append(cells)
    return _table(["contender", *(_n(s) + " leaves" for s in index.sizes)], rows)


def cpu_table(index: Index, leaves: int) -> str:
    """Median wall, client CPU and etcd CPU per contender at one size."""
    rows = []
    for label in _ordered(index):
        m = index.get(label, leaves)
        if m is None or not m.cpu:
            continue
        wall = statistics.median(m.times)
        client = statistics.median(c for _, c, _ in m.cpu)
        server = statistics.median(e for _, _, e in m.cpu)
        rows.append(
            [
                _per_call(index, label),
                fmt_time(wall),
                fmt_time(client),
                fmt_time(server),
                f"{(client + server) / wall:.2f}" if wall else "–",
            ]
        )
    header = ["contender", "wall", "client CPU", "etcd CPU", "cores busy (CPU / wall)"]
    return _table(header, rows)


def _verdict(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**missed**")


def _short(leaves: int) -> str:
    return f"{leaves // 1000:,}k" if leaves >= 1000 and leaves % 1000 == 0 else _n(leaves)


def _judged(row: dict[str, Any]) -> list[int]:
    return list(row.get("judge_at") or [GOAL_LEAVES])


def _resolved(row: dict[str, Any], found: dict[str, Any]) -> str:
    """`` (aetcd)`` when the row's denominator was resolved to a peer, else ``""``."""
    chosen = found.get("denominator", row["denominator"])
    if chosen == row["denominator"]:
        return ""
    peer = chosen.split(" v3 ")[0].removesuffix(cn.NESTED)
    return f" ({peer})"


def ratios_table(ratios: list[dict[str, Any]], sizes: Sequence[int]) -> str:
    rows = []
    for row in ratios:
        cells = [row["name"]]
        for leaves in sizes:
            found = row["by_size"].get(leaves)
            if found is None:
                cells.append("–")
            else:
                mark = "" if found["pairs"] > 1 else " ¹"
                cells.append(f"{found['ratio']:.2f}{mark}{_resolved(row, found)}")
        goal = ""
        if row["goal"]:
            goal = f"{row['goal']} at {', '.join(_short(s) for s in _judged(row))}"
        cells += [goal, _verdict(row["met"]) if row["goal"] else ""]
        rows.append(cells)
    header = ["ratio", *(_n(s) for s in sizes), "goal", "verdict"]
    return _table(header, rows)


def _median_of(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def side_by_side_table(index: Index, leaves: int) -> str:
    """v3 at one size: every contender of each operation with wall time and etcd CPU,
    each also as the median paired ratio to link.etcd's same operation."""
    rows = []
    for label in _ordered(index):
        m = index.get(label, leaves)
        if m is None or m.api != "v3" or m.who in (cn.HAND,):
            continue
        if m.failed and not m.runs:
            rows.append([_per_call(index, label), "failed", "", "", "", "", m.failed[:80]])
            continue
        if not m.runs:
            continue
        link = index.get(f"{cn.LINK} v3 {m.op}", leaves)
        if m.op == cn.GATHER:  # async clients only: compared with link.etcd aio's
            link = index.get(f"{cn.AIO} v3 {m.op}", leaves)
        if m.op == "read" and m.who.endswith(cn.NESTED):
            link = index.get(f"{cn.LINK} v3 read", leaves)
        wall = _median_of(m.times)
        server = _median_of([e for _, _, e in m.cpu])
        client = _median_of([c for _, c, _ in m.cpu])
        vs_wall = vs_cpu = "–"
        if link is not None and link.runs and link is not m:
            vs_wall = f"{paired_ratio(m, link)[0]:.2f}"
            vs_cpu = f"{paired_ratio(m, link, 'etcd CPU')[0]:.2f}" if link.cpu else "–"
        elif link is m:
            vs_wall = vs_cpu = "1"
        rows.append(
            [
                _per_call(index, label),
                fmt_time(wall),
                vs_wall,
                fmt_time(server),
                vs_cpu,
                fmt_time(client),
                _requests(m.requests, m.calls),
            ]
        )
    header = [
        "contender",
        "wall",
        "÷ link.etcd",
        "etcd CPU",
        "÷ link.etcd",
        "client CPU",
        "requests",
    ]
    return _table(header, rows, "lrrrrrl")


def _gather_labels(index: Index) -> list[str]:
    """The contenders of the concurrent gets, link.etcd aio first."""
    return [label for label in _ordered(index) if label.endswith(" v3 " + cn.GATHER)]


def gets_per_second(index: Index, label: str, leaves: int) -> float | None:
    """Gets per second of a concurrent-gets contender: CONCURRENT / median time per batch."""
    median = index.median(label, leaves)
    return cn.CONCURRENT / median if median else None


def gather_table(index: Index) -> str:
    """Per async contender and size: median time per batch of concurrent gets and the
    gets per second it makes, and the paired ratio of its times to link.etcd aio's."""
    rows = []
    aio = f"{cn.AIO} v3 {cn.GATHER}"
    for label in _gather_labels(index):
        cells = [label.removesuffix(f" v3 {cn.GATHER}")]
        for leaves in index.sizes:
            m, mine = index.get(label, leaves), index.get(aio, leaves)
            if m is None or not m.runs:
                cells.append("failed" if m is not None and m.failed else "–")
                continue
            rate = gets_per_second(index, label, leaves) or 0.0
            text = f"{fmt_time(index.median(label, leaves))}, {rate:,.0f}/s"
            if mine is not None and mine.runs and mine is not m:
                text += f" (×{paired_ratio(m, mine)[0]:.2f})"
            cells.append(text)
        rows.append(cells)
    return _table(["contender", *(_n(s) + " leaves" for s in index.sizes)], rows)


def _gather_line(index: Index) -> list[str]:
    """The concurrent gets beside aetcd's, at the goal size (else the largest)."""
    labels = _gather_labels(index)
    if not labels:
        return []
    measured = [s for s in index.sizes if any(index.median(lb, s) for lb in labels)]
    if not measured:
        return []
    leaves = GOAL_LEAVES if GOAL_LEAVES in measured else measured[-1]
    figures = []
    for label in labels:
        rate = gets_per_second(index, label, leaves)
        if rate is not None:
            who = label.removesuffix(f" v3 {cn.GATHER}")
            figures.append(f"{who} **{rate:,.0f} gets/s** ({fmt_time(cn.CONCURRENT / rate)})")
    aio, peer = (index.get(f"{w} v3 {cn.GATHER}", leaves) for w in (cn.AIO, "aetcd"))
    ratio = ""
    if aio is not None and peer is not None and aio.runs and peer.runs:
        ratio = f"; time per batch link.etcd aio / aetcd {paired_ratio(aio, peer)[0]:.2f}"
    return [
        f"- concurrent gets ({cn.CONCURRENT} single-key gets in flight, per batch), at "
        f"{_n(leaves)} leaves: {', '.join(figures)}{ratio} (informational, no goal: the "
        "figures side by side)"
    ]


def failures(index: Index) -> list[str]:
    """One line per contender that failed at some size."""
    return [
        f"- {m.label} at {_n(m.leaves)} leaves: {m.failed}"
        for m in index.by_key.values()
        if m.failed
    ]


def linearity_table(rows: list[dict[str, Any]], sizes: Sequence[int]) -> str:
    body = []
    for row in rows:
        cells = [row["label"]]
        for leaves in sizes:
            value = row["us_per_leaf"].get(leaves)
            cells.append("–" if value is None else f"{value:,.1f}")
        slope = row["slope"]
        cells += ["–" if slope is None else f"{slope:.2f}", row["verdict"]]
        body.append(cells)
    header = [
        "contender",
        *(f"µs/leaf at {_n(s)}" for s in sizes),
        f"slope {_n(LINEAR_FROM)}→{_n(LINEAR_TO)}",
        "growth",
    ]
    return _table(header, body, "l" + "r" * (len(sizes) + 1) + "l")


def memory_table(memory: list[dict[str, Any]]) -> str:
    rows = []
    for m in memory:
        traced = m.get("tracemalloc_peak")
        how = f" ({m['transport']})" if m.get("transport") else ""
        rows.append(
            [
                f"link.etcd {m['api']}{how} {m['op']}",
                _n(m["leaves"]),
                f"{m['growth'] / 2**20:,.1f} MiB",
                f"{m['bytes_per_leaf']:,.0f} B",
                "–" if traced is None else f"{traced / m['leaves']:,.0f} B",
                "met" if m["bytes_per_leaf"] < MEMORY_LIMIT else "**missed**",
            ]
        )
    header = [
        "operation",
        "leaves",
        "peak RSS growth",
        "per leaf",
        "Python heap peak per leaf",
        f"goal < {MEMORY_LIMIT} B/leaf",
    ]
    return _table(header, rows)


def profile_markdown(profile: dict[str, Any], top: int = 8) -> str:
    """The hotspots of each profiled target as Markdown."""
    if "error" in profile:
        return f"Profiling was skipped: {profile['error']}."
    parts = []
    for target, result in profile.items():
        wall = sorted(result["wall"])[len(result["wall"]) // 2]
        cpu = sorted(result["cpu"])[len(result["cpu"]) // 2]
        parts.append(
            f"**{target}** ({_n(result['leaves'])} leaves, {result['runs']} runs under py-spy; "
            f"median wall {fmt_time(wall)}, client CPU {fmt_time(cpu)} = "
            f"{cpu / wall:.0%} of wall)\n"
        )
        for view, data in result["views"].items():
            if not data["samples"]:
                continue
            spread = ", ".join(
                f"{name} {share:.0%}" for name, share in data.get("components", []) if share >= 0.01
            )
            parts.append(f"{view}, by component of the innermost frame: {spread}.\n")
            rows = []
            inclusive = [row for row in data["inclusive"] if row[1] < 0.995][:top]
            for (f_self, s_self), inc in _zip_longest(data["self"][:top], inclusive):
                rows.append(
                    [
                        f"`{f_self}`" if f_self else "",
                        f"{s_self:.0%}" if f_self else "",
                        f"`{inc[0]}`" if inc else "",
                        f"{inc[1]:.0%}" if inc else "",
                    ]
                )
            header = [
                f"{view}: self time ({data['samples']:,} samples)",
                "%",
                "link.etcd function, inclusive",
                "%",
            ]
            parts.append(_table(header, rows, "lrlr") + "\n")
    return "\n".join(parts)


def _zip_longest(
    selfs: list[list[Any]], incs: list[list[Any]]
) -> list[tuple[tuple[str, float], list[Any] | None]]:
    out: list[tuple[tuple[str, float], list[Any] | None]] = []
    for i in range(max(len(selfs), len(incs))):
        s = (selfs[i][0], selfs[i][1]) if i < len(selfs) else ("", 0.0)
        out.append((s, incs[i] if i < len(incs) else None))
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(etcd_binary: str) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, etcd and client versions, date, git commit."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            memory = int(handle.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    etcd_version = subprocess.run(
        [etcd_binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "etcd": etcd_version[0].split(":", 1)[-1].strip() if etcd_version else "unknown",
        "etcd3gw": _version("etcd3gw"),
        "python-etcd": _version("python-etcd"),
        "link.etcd": _version("link.etcd"),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "link")),
        "link_digest": link_digest(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _machine_line(m: dict[str, Any]) -> str:
    memory = f"{m['memory_bytes'] / 2**30:.0f} GiB RAM, " if m.get("memory_bytes") else ""
    dirty = " with uncommitted changes under link/" if m.get("git_dirty") else ""
    if m.get("link_digest_after") and m["link_digest_after"] != m.get("link_digest"):
        dirty += " (**link/ changed during the run**: the subprocesses of the memory and "
        dirty += "profile sections may have run newer code)"
    peers = ", ".join(f"{name} {version}" for name, version in m.get("peers", {}).items())
    grpc = f", grpcio {m.get('grpcio')}, protobuf {m.get('protobuf')}" if peers else ""
    return (
        f"{m['cpu']}, {m['cores']} cores, {memory}{m['os']}; Python {m['python']}, "
        f"etcd {m['etcd']} (single member on loopback), etcd3gw {m['etcd3gw']}, "
        f"python-etcd {m['python-etcd']}{', ' + peers if peers else ''}{grpc}; "
        f"link.etcd {m['link.etcd']} at commit {m['git_commit']}{dirty}; {m['date']}."
    )


def _transport_line(m: dict[str, Any]) -> str:
    if m.get("link_transports"):
        return (
            "link.etcd's v3 API ran with both transports: **link.etcd** is native gRPC "
            '(`transport="grpc"`, the default) and **link.etcd gateway** the JSON gateway '
            '(`transport="gateway"`).'
        )
    return (
        "This link.etcd has no `transport` setting: **link.etcd** v3 is its only transport, "
        "the JSON gateway (etcd3gw), so the goals against the gRPC peers compare the gateway, "
        "and the old-gateway rows judge link.etcd itself."
    )


def _peers_line(m: dict[str, Any]) -> str:
    missing = m.get("peers_missing", {})
    lines = [f"- {name} was left out: {why}" for name, why in missing.items()]
    return "\n".join(lines)


def plot(index: Index, path: str, repeat: int) -> str | None:
    """Time against leaves, log-log: rows v3 and v2, columns write/replace, read, delete.

    Hollow markers are single runs.  :returns: ``path``, or ``None`` when
    matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return None
    apis = [api for api in ("v3", "v2") if any(f" {api} " in label for label in index.labels)]
    columns = (("write", "replace"), ("read",), ("delete",))
    fig, axes = plt.subplots(
        len(apis), 3, figsize=(13, 4.2 * len(apis)), sharex=True, squeeze=False
    )
    for r, api in enumerate(apis):
        for c, ops in enumerate(columns):
            ax = axes[r][c]
            for op in ops:
                for who in _WHO:
                    label = f"{who} {api} {op}"
                    points = [
                        (s, index.median(label, s), len(m.runs))
                        for s in index.sizes
                        if (m := index.get(label, s)) and m.runs
                    ]
                    if not points:
                        continue
                    xs = [p[0] for p in points]
                    ys = [p[1] for p in points]
                    style = ":" if op == "replace" else ("--" if who == cn.FLOOR else "-")
                    width = 2.4 if who == cn.LINK else 1.4
                    name = who if op != "replace" else f"{who} (replace)"
                    ax.plot(xs, ys, style, color=_COLORS[who], lw=width, label=name)
                    for x, y, n in points:
                        ax.plot(
                            x, y, "o" if op != "replace" else "s", ms=5,
                            color=_COLORS[who],
                            mfc=_COLORS[who] if n >= min(repeat, 2) else "white",
                        )  # fmt: skip
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(FixedLocator(index.sizes))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: _tick(y)))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{api} {' / '.join(ops)}")
            if c == 0:
                ax.set_ylabel("median time per operation")
            if r == len(apis) - 1:
                ax.set_xlabel("leaves")
            if ax.lines:
                ax.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.suptitle(
        "link.etcd against the request floor, the hand-written loop, etcdctl and the gRPC clients"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _goal_lines(ratios: list[dict[str, Any]], memory: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in ratios:
        if not row["goal"]:
            continue
        values = []
        for leaves in _judged(row):
            found = row["by_size"].get(leaves)
            if found is None:
                values.append(f"not measured at {_n(leaves)}")
                continue
            value = f"**{found['ratio']:.2f}**{_resolved(row, found)}"
            values.append(f"{value} at {_n(leaves)}")
        lines.append(
            f"- {row['name']}: {'; '.join(values)} (goal {row['goal']}): {_verdict(row['met'])}"
        )
    for m in memory:
        verdict = "met" if m["bytes_per_leaf"] < MEMORY_LIMIT else "**missed**"
        how = f" ({m['transport']})" if m.get("transport") else ""
        lines.append(
            f"- memory, link.etcd {m['api']}{how} {m['op']} of {_n(m['leaves'])} leaves: "
            f"**{m['bytes_per_leaf']:,.0f} B/leaf** peak RSS growth "
            f"(goal < {MEMORY_LIMIT}): {verdict}"
        )
    return lines


def _linearity_lines(linear: list[dict[str, Any]]) -> list[str]:
    lo, hi = LINEAR_SLOPE
    out = []
    for row in linear:
        per_leaf = row["us_per_leaf"]
        if row["slope"] is None or not row["label"].startswith(cn.LINK):
            continue
        span = ""
        if LINEAR_FROM in per_leaf and LINEAR_TO in per_leaf:
            span = (
                f", {per_leaf[LINEAR_FROM]:,.1f} µs/leaf at {_n(LINEAR_FROM)} and "
                f"{per_leaf[LINEAR_TO]:,.1f} at {_n(LINEAR_TO)}"
            )
        out.append(f"- {row['label']}: slope {row['slope']:.2f}{span}: {row['verdict']}")
    intro = (
        f"Slope of log(time) against log(leaves) between {_n(LINEAR_FROM)} and "
        f"{_n(LINEAR_TO)} leaves, least squares over the sizes measured (1.00 is linear; "
        f"{lo}-{hi} is counted as linear)"
    )
    return [intro + (". link.etcd:" if out else "."), *(["", *out] if out else [])]


def link_digest() -> str:
    """A short hash of the ``link/`` sources, to tell whether they changed during a run."""
    import hashlib

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "link")
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()[:12]


def markdown_report(results: dict[str, Any], index: Index, png_name: str | None) -> str:
    """The whole ``docs/performance.md`` text."""
    sizes = index.sizes
    repeat = results["repeat"]
    cpu_leaves = GOAL_LEAVES if GOAL_LEAVES in sizes else sizes[-1]
    wall = sum(sum(m.times) for m in index.by_key.values())
    foreign = sum(m.foreign_cpu for m in index.by_key.values())
    busy_note = (
        f"Other processes kept {foreign / wall:.2f} of the machine's cores busy on average "
        "during the timed runs (from `/proc/stat`, minus this process, its etcdctl children "
        "and etcd; neighbours invisible to `ps` count too)"
        + (
            ": **the machine was not quiet, absolute times are inflated** (the ratios, "
            "taken between interleaved runs, suffer less)."
            if foreign / wall > 0.2
            else " (a quiet machine)."
        )
        if wall
        else ""
    )
    parts = [
        "# Performance",
        "",
        "<!-- Generated by `python -m bench` (bench/report.py): edit the generator, "
        "not this file. -->",
        "",
        "Speed here means round trips: link.etcd should cost barely more than the fewest "
        "requests etcd allows, and far less than the loop a user would write by hand. "
        "Every contender below ran in the same run, against the same throwaway etcd, "
        "interleaved, and every time is the median of its repetitions.",
        "",
        "## Goals",
        "",
        *_goal_lines(results["ratios"], results.get("memory", [])),
        *_gather_line(index),
        "",
        _transport_line(results["machine"])
        + " *Fastest gRPC peer*: at each size, whichever of "
        + ", ".join(PEERS)
        + " had the lowest median wall time for that operation (named in brackets); its etcd "
        "CPU is the one compared. *Old gateway*: link.etcd v3 / floor at 10,000 leaves "
        + ", ".join(f"{op} {ratio:.2f}" for op, ratio in OLD_GATEWAY.items())
        + " in docs/performance.md of commit 0e74a5c (medians "
        + ", ".join(f"{op} {ms} ms" for op, ms in OLD_GATEWAY_MS.items())
        + ", on another machine: compare the ratios); the goal allows 10% of run-to-run noise.",
        "",
        *([_peers_line(results["machine"]), ""] if results["machine"].get("peers_missing") else []),
        *(["Failures:", "", *failures(index), ""] if failures(index) else []),
        f"Machine: {_machine_line(results['machine'])}",
        "",
        f"Reproduce: `{results['command']}` from the repository root (whole run: "
        f"{_duration(results['total_seconds'])}). {busy_note}",
        "",
        "## Time against tree size",
        "",
    ]
    if png_name:
        parts += [
            f"![time against leaves, log-log, one line per contender]({png_name})",
            "",
            "Log-log; dashed: the floor, dotted: link.etcd replacing a tree of the same shape; "
            "hollow markers: a single run.",
            "",
        ]
    parts += [
        f"Median wall time of one operation ({repeat} repetitions, "
        f"{repeat * results.get('per_call_repeat', 1)} for the per-call ones; `(n=k)` marks "
        f"contenders cut to k runs by the {results['budget']:.0f} s budget per contender and "
        "size):",
        "",
        times_table(index, repeat),
        "",
        "Requests the server counted for one operation (v3: KV gRPC calls, the JSON gateway "
        "included; v2: HTTP requests):",
        "",
        requests_table(index),
        "",
        f"CPU time of one operation at {_n(cpu_leaves)} leaves (medians; client: this "
        "process and the etcdctl processes it ran; etcd: the server process). The machine "
        f"has {results['machine']['cores']} cores, shared by both:",
        "",
        cpu_table(index, cpu_leaves),
        "",
    ]
    side_sizes = [s for s in sizes if s >= GOAL_LEAVES] or sizes[-1:]
    if any(m.who in PEERS for m in index.by_key.values()):
        parts += [
            "## link.etcd and the gRPC clients, side by side (v3)",
            "",
            "Same run, same server, interleaved. Wall time and etcd's CPU of one operation "
            "(medians), and each as the median of the paired ratios to link.etcd's same "
            "operation (below 1: cheaper than link.etcd; a *+ nesting* read is compared with "
            "link.etcd's read, which returns nested dicts too). The peers ran in their own "
            "worker processes and timed themselves around their client calls; client CPU is "
            "that of the process that made the calls. *key get* / *key put*: "
            f"{cn.CALLS} single-key calls in a row, figures per call.",
            "",
        ]
        for leaves in side_sizes:
            parts += [f"At {_n(leaves)} leaves:", "", side_by_side_table(index, leaves), ""]
    if _gather_labels(index):
        parts += [
            "## Concurrent gets (asyncio)",
            "",
            f"{cn.CONCURRENT} gets of one key in flight at once (`asyncio.gather`), "
            f"{cn.BATCHES} batches in a row per run: median time per batch, the gets per "
            f"second it makes ({cn.CONCURRENT} / time per batch) and, in brackets, the median "
            "paired ratio of the times to link.etcd aio's (above 1: slower than link.etcd "
            "aio). link.etcd aio ran in this process on the run's one event loop; aetcd on "
            "its worker's loop, timed there. The tree's size does not matter here (one key); "
            "each size is one more sample.",
            "",
            gather_table(index),
            "",
        ]
    parts += [
        "## Ratios",
        "",
        "Median of the ratios between runs of the same repetition (¹: a single pair). "
        'Above 1 in a "× faster" row, link.etcd is faster.',
        "",
        ratios_table(results["ratios"], sizes),
        "",
        "## Growth with tree size",
        "",
        *_linearity_lines(results["linearity"]),
        "",
        linearity_table(results["linearity"], sizes),
        "",
    ]
    if results.get("memory"):
        parts += [
            "## Memory",
            "",
            "Peak resident-memory growth of one call in a fresh process (the tree to write is "
            "built before, the value read is included), see `bench/memory.py`:",
            "",
            memory_table(results["memory"]),
            "",
        ]
    if results.get("profile"):
        parts += [
            "## Where the time goes",
            "",
            "py-spy samples (wall clock, `--idle`: waiting for etcd appears as socket reads) of "
            "link.etcd alone, `bench/profile.py`. *Self* is time in the function's own code; "
            "*inclusive* includes what it calls.",
            "",
            profile_markdown(results["profile"]),
            "",
        ]
    parts += [
        "## The contenders",
        "",
        "All of them store or read the same keys and values, those of "
        "`codec.flatten(codec.encode(tree), '/bench/tree')`.",
        "",
        "- **link.etcd**: `client[path] = tree` into an empty path (*write*) and over a tree "
        "of the same shape whose every value differs (*replace*), `client[path]` (*read*), "
        "`del client[path]` (*delete*); one long-lived client per API.",
        "- **floor**, the fewest requests etcd allows. v3: raw etcd3gw transactions of "
        f"{cn.BATCH} puts each, one `get_prefix`, one `delete_prefix`. v2: one recursive "
        "python-etcd `read` (request and JSON parse, nothing walked) and one recursive "
        "`delete`; v2 has no multi-key write, so no write floor.",
        "- **hand loop**, what users of the other clients write today. v3: one `etcd3gw.put` "
        "per leaf; the read lists the subtree's keys with one `keys_only` range (etcd v3 has "
        "no directories; a range is how one lists one) and then `get`s every key, building "
        "nested dicts; that is the cheapest node-by-node walk. v2: one python-etcd `write` "
        "per leaf, sequentially; the read walks directory by directory, one non-recursive "
        "`read` each.",
        f"- **etcdctl** {results['machine']['etcd']}, the official client, v3 only: one "
        f"`etcdctl txn` process per {cn.BATCH} puts, one `etcdctl get --prefix` (text "
        "output parsed), one `etcdctl del --prefix`.",
        "- **link.etcd aio**: link.etcd's asyncio client (`AsyncEtcdMiddleware`, "
        '`transport="grpc"`) in this process, on one event loop kept for the whole run '
        "and one client connected before the first timed run: `await client.set(path, "
        "tree)` into an empty path (*write*) and `await client.get(path)` (*read*), each "
        "timed run one `loop.run_until_complete`.",
        "- **link.etcd gateway**: link.etcd's v3 API through the JSON gateway "
        '(`transport="gateway"`), when link.etcd has that setting; **link.etcd** is then its '
        'native gRPC transport (`transport="grpc"`).',
        f"- **{', '.join(PEERS)}**, the Python gRPC clients of etcd v3, each in its own "
        "worker process (they register the same `kv.proto` in protobuf's default pool and "
        "cannot share one; `bench/peers.py`), which times itself around the client calls "
        f"only: transactions of {cn.BATCH} puts (*write*), one `get_prefix` turned into "
        "`(key, value)` pairs of bytes (*read*, flat), one `delete_prefix`. Their channels "
        "have no receive limit (`grpc.max_receive_message_length` -1; gRPC's default 4 MiB "
        "is too small for 100,000 keys). **+ nesting**: the same `get_prefix` followed by "
        "the loop a user writes to nest the pairs into a dict of dicts (split each key on "
        "`/`, `setdefault` down the path, values decoded as UTF-8 text; numbers and lists "
        "stay strings and dicts, so it does less than link.etcd's read).",
        f"- *key get* / *key put*: {cn.CALLS} calls in a row of `client['/x']` / "
        "`client['/x'] = 'v'` (link.etcd), `get` / `put` of the key `/bench/x` (etcd3gw as "
        "the floor, and each peer), reported per call.",
        f"- *concurrent gets*, the async clients only (link.etcd aio, aetcd): {cn.BATCHES} "
        f"batches in a row of {cn.CONCURRENT} gets of `/bench/x` in flight at once "
        "(`asyncio.gather`), reported per batch and as gets per second.",
        "",
        "Trees (`bench/trees.py`, fixed seed): a root dict of sections holding nested dicts "
        "and lists (of scalars and of records), 2 to 9 children per container and up to 12 "
        "levels, short strings (`eu-west`, `redis-17.internal`), integers, floats and a few "
        "booleans; exactly N keys once stored. The replace tree has the same keys and a new "
        "value in every leaf.",
        "",
        "Method (`bench/runner.py`): one etcd (the test harness's `EtcdServer`, v2 enabled, "
        "`--quota-backend-bytes` 8 GiB), every benchmark key deleted, the history compacted "
        "and the backend defragmented before each size. A warm-up pass at the smallest size "
        "is discarded. Each repetition runs every contender once, in a random order (fixed "
        "seed) that prefers contenders whose needed state (empty path, tree A, tree B) is the "
        "current one; untimed setups restore it otherwise. Before each run the client "
        "process and etcd collect their garbage (etcd runs with `--enable-pprof`, and "
        "`/debug/pprof/heap?gc=1` runs Go's collector), so no run pays for garbage an "
        "earlier one left. The first run of each contender at "
        "each size is checked (it stored exactly tree A's keys and values, or read the whole "
        "tree) and its requests counted from the server's `/metrics`, outside the timing. A "
        f"contender stops repeating at a size once its runs and their setups took more than "
        f"{results['budget']:.0f} s: the one-request-per-leaf loops run once at 100,000 "
        "leaves. The contenders timed per call (key get and key put, 200 calls in a row, "
        "about 0.1 s; concurrent gets, per batch) repeat "
        f"{results.get('per_call_repeat', 1)} times as often, in further repetitions of "
        "their own: one such run varies by about ±20% within a run. The client and the "
        "server share the machine's cores.",
        "",
    ]
    return "\n".join(parts)
