"""``python -m bench``: link.etcd against the request floor, hand-written loops, etcdctl
and the gRPC clients (python3-etcd3, etcd-sdk-python, aetcd); link.etcd's asyncio
client against its sync client, and its concurrent gets against aetcd's.

Starts a throwaway etcd (the test harness's :class:`link.etcd.testing.EtcdServer`,
v2 enabled), starts one worker process per gRPC peer (:mod:`bench.peers`), times
every contender at every tree size interleaved over several repetitions,
measures peak memory of link.etcd's write and read of the largest tree in fresh
processes (per v3 transport), and writes:

- the Markdown tables to stdout;
- the raw results to ``bench/results/latest.json``;
- ``docs/performance.md`` and its plot ``docs/performance.png`` (not with
  ``--quick``, unless ``--docs`` is given).

``--quick`` (sizes 100 and 1,000, 2 repetitions, no memory) finishes in about
a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from link.etcd.testing import EtcdServer

from . import analysis, memory, report
from .contenders import API_V2, API_V3, PATH, Clients, Setup, State, Workload
from .runner import PER_CALL_REPEAT, Measurement, cleanup, measure_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "latest.json")
DOC = os.path.join(ROOT, "docs", "performance.md")
PNG = os.path.join(ROOT, "docs", "performance.png")
DEFAULT_SIZES = (100, 1_000, 10_000, 100_000)
#: etcd's recommended maximum backend size: room for many 100,000-key writes.
QUOTA_BYTES = 8 * 2**30


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def start_server() -> Iterator[EtcdServer]:
    """A throwaway etcd like the tests' (v2 enabled), with a large backend quota and
    ``--enable-pprof``, whose heap handler lets each run start from a collected heap
    (:func:`bench.runner.server_gc`)."""
    extra = [f"--quota-backend-bytes={QUOTA_BYTES}", "--enable-pprof"]
    with EtcdServer(enable_v2=True, extra_args=extra) as server:
        yield server


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 100,1000,10000")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=_sizes, help="tree sizes in leaves (default 100,…,100000)")
    parser.add_argument("--repeat", type=int, help="repetitions per contender (default 5)")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds per contender and size after which it stops repeating (default 60)",
    )
    parser.add_argument("--apis", default="v3,v2", help="v3, v2 or v3,v2 (default)")
    parser.add_argument("--quick", action="store_true", help="sizes 100,1000, 2 repetitions")
    parser.add_argument(
        "--memory-leaves",
        type=int,
        help="tree size for the memory measurement (default: the largest size; 0: skip)",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also measure the Python heap's peak"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy hotspots of link.etcd (needs py-spy)"
    )
    parser.add_argument("--profile-leaves", type=int, default=10_000)
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        help="write docs/performance.md and .png (default: yes, except with --quick)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the run order")
    parser.add_argument("--json", default=RESULTS, help="where to write the raw results")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: render the report (and docs) again from --json",
    )
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([100, 1_000] if args.quick else list(DEFAULT_SIZES))
    args.repeat = args.repeat or (2 if args.quick else 5)
    if args.memory_leaves is None:
        args.memory_leaves = 0 if args.quick else max(args.sizes)
    if args.docs is None:
        args.docs = not args.quick
    args.apis = [api for api in (API_V3, API_V2) if api in args.apis.split(",")]
    if not args.apis:
        parser.error("--apis must name v3, v2 or both")
    if args.docs and importlib.util.find_spec("matplotlib") is None:
        parser.error("the docs need a plot: pip install matplotlib (or pass --no-docs)")
    if args.profile and not args.report_only:
        from .profile import py_spy

        if py_spy() is None:
            parser.error("--profile needs py-spy: pip install py-spy")
    return args


def _memory(server: EtcdServer, clients: Clients, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Peak RSS growth of link.etcd's write, then read, of the tree, per API."""
    out = []
    work = Workload.make(args.memory_leaves)
    for api in args.apis:
        transports: list[str | None] = [None]
        if api == API_V3 and clients.transports:
            transports = list(clients.transports)
        for transport in transports:
            Setup(api, clients, work)(State.EMPTY)
            for op in ("write", "read"):
                how = f" ({transport})" if transport else ""
                log(f"memory: link.etcd {api}{how} {op} of {work.leaves:,} leaves")
                result = memory.measure(
                    server.endpoint, api, op, work.leaves, args.tracemalloc, transport
                )
                log(f"  {result['growth'] / 2**20:.1f} MiB, {result['bytes_per_leaf']:.0f} B/leaf")
                out.append(result)
            if api == API_V3:
                del clients.v3[PATH]
            else:
                del clients.v2[PATH]
    return out


def command_line(argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m bench", *map(shlex.quote, args)])


def measure(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run everything asked for against a throwaway etcd; return the raw results."""
    started = time.perf_counter()
    rng = random.Random(args.seed)
    measurements: list[Measurement] = []
    server_status: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    with start_server() as server:
        log(f"etcd at {server.endpoint}; sizes {args.sizes}, {args.repeat} repetitions")
        clients = Clients(server)
        try:
            if clients.transports:
                log("link.etcd v3: transport grpc ('link.etcd') and gateway ('link.etcd gateway')")
            else:
                log("link.etcd v3: no `transport` setting in this tree: one contender, as before")
            if clients.aio is not None and API_V3 in args.apis:
                log("link.etcd aio: the asyncio client (grpc) on one event loop for the run")
            if API_V3 in args.apis:
                clients.start_peers(log)
            machine = report.machine_info(server.binary)
            machine["link_transports"] = list(clients.transports)
            machine["peers"] = {name: peer.version for name, peer in clients.peers.items()}
            machine["peers_missing"] = dict(clients.peers_missing)
            log(f"warm-up at {args.sizes[0]} leaves (discarded)")
            warm_up = Workload.make(args.sizes[0])
            measure_size(clients, warm_up, args.apis, 1, args.budget, rng, lambda _: None)
            for leaves in args.sizes:
                status = server_status[str(leaves)] = cleanup(clients)
                log(f"{leaves:,} leaves (etcd backend {status.get('dbSize', 0):,} B)")
                work = Workload.make(leaves)
                measurements += measure_size(
                    clients, work, args.apis, args.repeat, args.budget, rng, log
                )
            cleanup(clients)
            mem = _memory(server, clients, args) if args.memory_leaves else []
            if args.profile:
                from .profile import profile_targets

                cleanup(clients)
                profile = profile_targets(server.endpoint, args.profile_leaves)
        finally:
            clients.close()
    machine["link_digest_after"] = report.link_digest()
    index = analysis.Index(measurements)
    return {
        "command": command,
        "machine": machine,
        "sizes": args.sizes,
        "repeat": args.repeat,
        "per_call_repeat": PER_CALL_REPEAT,
        "budget": args.budget,
        "seed": args.seed,
        "apis": args.apis,
        "server_status_before_size": server_status,
        "measurements": [m.to_json() for m in measurements],
        "ratios": analysis.ratio_rows(index),
        "linearity": analysis.linearity(index),
        "memory": mem,
        "profile": profile,
        "total_seconds": time.perf_counter() - started,
    }


def render(results: dict[str, Any], docs: bool) -> str:
    """Markdown for ``results``; with ``docs``, also write the plot and docs/performance.md."""
    index = analysis.Index(Measurement.from_json(m) for m in results["measurements"])
    # Recomputed rather than read back: JSON turned their int size keys into strings.
    results = {
        **results,
        "ratios": analysis.ratio_rows(index),
        "linearity": analysis.linearity(index),
    }
    png = report.plot(index, PNG, results["repeat"]) if docs else None
    text = report.markdown_report(results, index, os.path.basename(png) if png else None)
    if docs:
        with open(DOC, "w", encoding="utf-8") as handle:
            handle.write(text)
        made = [DOC] + ([PNG] if png else [])
        log("wrote " + " and ".join(os.path.relpath(p, ROOT) for p in made))
        if png is None:
            log("matplotlib is not installed: no plot (pip install matplotlib)")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        with open(args.json, encoding="utf-8") as handle:
            results = json.load(handle)
        print(render(results, args.docs))
        return 0
    results = measure(args, command_line(argv))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    print(render(results, args.docs))
    log(f"raw results in {os.path.relpath(args.json, ROOT)}; {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
