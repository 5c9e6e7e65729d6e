"""Peak resident memory of one link.etcd write or read, in a fresh process.

``python -m bench.memory --endpoint URL --api v3 --op write --leaves 100000``
builds the tree (for a write), opens the middleware and sends one request so
that the connection exists, collects garbage, resets the kernel's peak-RSS mark
(``echo 5 > /proc/self/clear_refs``), records the current RSS, runs the one
operation and prints, as JSON, the peak RSS (``VmHWM``) minus that starting RSS:
what the call itself needed at its peak, including the value it returns.  Where
the mark cannot be reset, ``getrusage``'s ``ru_maxrss`` is used instead (then
the growth can only be over-estimated, never under).

With ``--tracemalloc`` the call also runs under :mod:`tracemalloc` (slower), to
give the peak of the Python heap alone.  ``--transport grpc|gateway`` picks
link.etcd's v3 transport (only where link.etcd has that setting).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["measure"]


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _child(
    endpoint: str, api: str, op: str, leaves: int, trace: bool, transport: str | None = None
) -> dict[str, Any]:
    from link.etcd import EtcdMiddleware

    from .contenders import PATH, PREFIX
    from .trees import make_tree

    tree = make_tree(leaves) if op == "write" else None
    chosen: dict[str, Any] = {"transport": transport} if transport else {}
    client = EtcdMiddleware(
        endpoints=[endpoint], api=api, prefix=PREFIX, read_timeout=300.0, **chosen
    )
    client.get("/no-such-key")  # connect (and, on v2, create python-etcd's client)
    gc.collect()
    exact = _reset_peak() and _status_kib("VmHWM") is not None
    rss_before = (_status_kib("VmRSS") or 0) * 1024
    if trace:
        import tracemalloc

        tracemalloc.start()
    started = time.perf_counter()
    if op == "write":
        client[PATH] = tree
        count = leaves
    else:
        from .contenders import count_leaves

        value = client[PATH]
        count = count_leaves(value)  # lists count as one leaf here: a sanity figure only
    seconds = time.perf_counter() - started
    traced_peak = None
    if trace:
        import tracemalloc

        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if exact:
        peak = (_status_kib("VmHWM") or 0) * 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    client.close()
    return {
        "api": api,
        "transport": transport,
        "op": op,
        "leaves": leaves,
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_peak": peak,
        "growth": peak - rss_before,
        "bytes_per_leaf": (peak - rss_before) / leaves,
        "method": "VmHWM after clear_refs" if exact else "ru_maxrss",
        "tracemalloc_peak": traced_peak,
        "top_level_values_read": count,
    }


def measure(
    endpoint: str,
    api: str,
    op: str,
    leaves: int,
    trace: bool = False,
    transport: str | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result.

    The caller prepares the path: empty for ``op="write"``, holding the
    ``leaves``-leaf tree for ``op="read"``.

    :raises subprocess.CalledProcessError: the child failed.
    """
    cmd = [sys.executable, "-m", "bench.memory", "--endpoint", endpoint, "--api", api]
    cmd += ["--op", op, "--leaves", str(leaves)] + (["--tracemalloc"] if trace else [])
    cmd += ["--transport", transport] if transport else []
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--api", choices=["v3", "v2"], required=True)
    parser.add_argument("--op", choices=["write", "read"], required=True)
    parser.add_argument("--leaves", type=int, required=True)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--transport", choices=["grpc", "gateway"])
    args = parser.parse_args(argv)
    result = _child(args.endpoint, args.api, args.op, args.leaves, args.tracemalloc, args.transport)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
