"""Where link.etcd spends its time: py-spy profiles of its writes and reads.

``python -m bench.profile --endpoint URL`` (or ``python -m bench --profile``)
runs, for each target, a fresh interpreter under ``py-spy record --idle`` (wall
clock: time spent waiting for etcd shows up in the socket calls) that repeats
one middleware operation on the 10,000-leaf tree, then folds the sampled stacks
into the functions with the most *self* time and the link.etcd functions with
the most *inclusive* time, as a share of the samples taken inside the operation.
Setup (building the tree, emptying the path) happens outside the sampled frame.

For the v2 write, whose leaves are sent by a pool of writer threads, the busy
samples of those threads are a second view (``writers``); the caller's thread
mostly waits for them.

py-spy is not a dependency of link.etcd: ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["TARGETS", "fold", "profile_targets"]

#: Targets and how many times each repeats the operation under the profiler.
TARGETS: dict[str, int] = {
    "v3-write": 6,
    "v3-replace": 6,
    "v3-read": 15,
    "v2-write": 3,
    "v2-read": 15,
}
#: Samples per second.
RATE = 1000
#: The frame every sampled operation runs in.
FOCUS = "_profiled_op"


def _profiled_op(op: Callable[[], Any]) -> Any:
    return op()


def _child(target: str, endpoint: str, leaves: int, runs: int) -> dict[str, Any]:
    from link.etcd import EtcdMiddleware

    from .contenders import PATH, PREFIX
    from .trees import make_tree

    api, op = target.split("-")
    tree = make_tree(leaves)
    other = make_tree(leaves, variant=1)
    client = EtcdMiddleware(endpoints=[endpoint], api=api, prefix=PREFIX, read_timeout=300.0)
    client[PATH] = tree  # warm the connection; reads read this

    def write() -> None:
        client[PATH] = tree

    def prepare() -> None:
        if op == "write":
            del client[PATH]
        elif op == "replace":
            client[PATH] = other

    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        prepare()
        started, started_cpu = time.perf_counter(), time.process_time()
        _profiled_op(write if op in ("write", "replace") else (lambda: client[PATH]))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    client.close()
    return {"target": target, "leaves": leaves, "runs": runs, "wall": wall, "cpu": cpu}


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Components by the file of the sampled (innermost) frame; first match wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting for etcd (socket reads, polls)", ("socket.py:readinto", "urllib3/util/wait.py")),
    ("sending requests (socket writes)", ("http/client.py:send", "socket.py:sendall")),
    ("JSON encode/decode", ("json/",)),
    ("base64", ("base64.py",)),
    # decoding.py and encoding.py compiled (mypyc) have no Python frames: py-spy
    # counts their time in their callers', codec.decode and codec.encode
    ("link.etcd codec", ("link/etcd/codec.py", "link/etcd/decoding.py", "link/etcd/encoding.py")),
    ("link.etcd backends", ("link/etcd/backends/",)),
    ("link.etcd other", ("link/etcd/",)),
    ("etcd3gw", ("etcd3gw/",)),
    ("python-etcd", ("etcd/",)),
    ("HTTP client (requests, urllib3, http.client)", ("requests/", "urllib3/", "http/")),
    ("threads and futures", ("threading.py", "concurrent/", "queue.py")),
)


def _short_path(path: str) -> str:
    """A file path as a module path: after ``site-packages/``, the stdlib or the repo root."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") else tail
    if path.startswith(_ROOT + os.sep):
        return os.path.relpath(path, _ROOT)
    return path


def _function(frame: str) -> str:
    """``'encode (/usr/lib/python3.11/json/encoder.py:199)'`` → ``'encode (json/encoder.py)'``."""
    name, _, where = frame.partition(" (")
    if not where:
        return name
    return f"{name} ({_short_path(where.rsplit(':', 1)[0].rstrip(')'))})"


def _component(function: str) -> str:
    name, _, path = function.partition(" (")
    where = path.rstrip(")") + ":" + name.rsplit(".", 1)[-1]
    for component, markers in COMPONENTS:
        if any(marker in where for marker in markers):
            return component
    return "other"


def _views(target: str) -> dict[str, Callable[[list[str]], bool]]:
    def in_op(stack: list[str]) -> bool:
        return any(frame.startswith(FOCUS + " ") for frame in stack)

    views: dict[str, Callable[[list[str]], bool]] = {"operation": in_op}
    if target == "v2-write":

        def busy_writer(stack: list[str]) -> bool:
            # An idle pool thread blocks in the C queue's get(), so _worker is its top frame.
            return any(f.startswith("_worker ") for f in stack) and not stack[-1].startswith(
                "_worker "
            )

        views["writers"] = busy_writer
    return views


def _shares(counter: Counter[str], total: int, top: int | None) -> list[list[Any]]:
    return [[name, n / total] for name, n in counter.most_common(top)] if total else []


def fold(raw: str, target: str, top: int = 12) -> dict[str, Any]:
    """Summarise py-spy's raw (collapsed) output for each view of ``target``.

    :returns: ``{view: {"samples": n, "self": [[function, share], ...],
        "inclusive": [[link.etcd function, share], ...]}}``, shares in 0..1.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in raw.splitlines():
        frames, _, samples = line.rpartition(" ")
        if frames and samples.isdigit():
            stacks.append((frames.split(";"), int(samples)))
    out: dict[str, Any] = {}
    for view, keep in _views(target).items():
        self_time: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        components: Counter[str] = Counter()
        total = 0
        for stack, count in stacks:
            if not keep(stack):
                continue
            total += count
            innermost = _function(stack[-1])
            self_time[innermost] += count
            components[_component(innermost)] += count
            for function in {_function(frame) for frame in stack}:
                if "link/etcd/" in function:
                    inclusive[function] += count

        out[view] = {
            "samples": total,
            "components": _shares(components, total, None),
            "self": _shares(self_time, total, top),
            "inclusive": _shares(inclusive, total, top),
        }
    return out


def py_spy() -> str | None:
    """Path of the py-spy program (next to this interpreter, or on ``PATH``)."""
    sibling = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return sibling if os.path.isfile(sibling) else shutil.which("py-spy")


def profile_targets(
    endpoint: str,
    leaves: int = 10_000,
    targets: Sequence[str] = tuple(TARGETS),
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Profile each target against ``endpoint``; see the module docstring.

    :returns: ``{target: {"wall": [...], "cpu": [...], "views": fold(...)}}``,
        or ``{"error": text}`` when py-spy is missing or cannot sample.
    """
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="link-etcd-profile-") as tmp:
        for target in targets:
            raw_path = os.path.join(tmp, f"{target}.txt")
            result_path = os.path.join(tmp, f"{target}.json")
            cmd = [
                spy, "record", "--idle", "--nonblocking", "--full-filenames", "--rate", str(RATE),
                "--format", "raw", "--output", raw_path, "--",
                sys.executable, "-m", "bench.profile", "--target", target,
                "--endpoint", endpoint, "--leaves", str(leaves),
                "--runs", str(TARGETS[target]), "--result", result_path,
            ]  # fmt: skip
            log(f"profiling {target} ({TARGETS[target]} runs of {leaves} leaves)")
            done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
            if done.returncode != 0 or not os.path.exists(raw_path):
                return {"error": f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}"}
            with open(result_path, encoding="utf-8") as handle:
                result = json.load(handle)
            with open(raw_path, encoding="utf-8") as handle:
                result["views"] = fold(handle.read(), target)
            results[target] = result
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--endpoint", help="etcd URL; default: start a throwaway server")
    parser.add_argument("--leaves", type=int, default=10_000)
    parser.add_argument("--target", choices=sorted(TARGETS), help="(internal) profiled child")
    parser.add_argument("--runs", type=int, default=3, help="(internal) runs in the child")
    parser.add_argument("--result", help="(internal) where the child writes its timings")
    args = parser.parse_args(argv)
    if args.target:
        result = _child(args.target, args.endpoint, args.leaves, args.runs)
        with open(args.result, "w", encoding="utf-8") as handle:
            json.dump(result, handle)
        return 0
    from .report import profile_markdown

    if args.endpoint:
        print(profile_markdown(profile_targets(args.endpoint, args.leaves)))
        return 0
    from .__main__ import start_server

    with start_server() as server:
        print(profile_markdown(profile_targets(server.endpoint, args.leaves)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
