"""Run the contenders interleaved, repetition after repetition, and keep every timing.

Noise on these machines is large (FACTS.md: the same ``get_prefix`` varied
44-86 ms between runs), so contenders are never timed in blocks: each
repetition runs every contender once in a random order (fixed seed), and
ratios are taken between runs of the same repetition.  The order is drawn
greedily: among the contenders whose needed state (empty path, tree A, tree B)
is the current one, one is picked at random, so few untimed setups are needed.

A contender stops repeating at a size once its runs, plus the setups they
needed, took more than the time budget (it always runs once): the
one-request-per-leaf loops run once at 100,000 leaves.

Contenders of ``calls`` calls in a row (single-key gets and puts, about 0.1 s a
run; the batches of concurrent gets) repeat :data:`PER_CALL_REPEAT` times as
often, in further repetitions of their own: one run of 200 calls varied by
±20% within a run, so 5 left their median (and the choice of the fastest of
three peers, two of them forks of one code) to chance.

Before each run both sides collect their garbage: this process (``gc.collect``)
and etcd (:func:`server_gc`), so that no contender pays for garbage an earlier one
left behind.  Without it etcd's CPU for the same 100,000-key read varied up to 3x
from run to run, for every client, as Go's collector happened to run inside one
run or another.

A contender whose run returns a :class:`~bench.peers.Timed` (a gRPC peer, timed
inside its worker process around the client calls) is recorded with that time
and that client CPU; etcd's CPU is taken here around the whole command, which
is the same thing (the server works only during the client calls).  A
contender of ``calls`` calls in a row is recorded per call.  A run that raises
is recorded as the contender's failure at that size (``Measurement.failed``)
and the contender is not run again at that size; the run goes on.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import etcd
import etcd3gw.exceptions

from link.etcd.testing.metrics import difference, request_counts

from .contenders import (
    GATHER,
    PREFIX,
    Clients,
    Contender,
    Setup,
    State,
    Timed,
    Workload,
    contenders,
)

__all__ = ["PER_CALL_REPEAT", "Measurement", "cleanup", "measure_size"]

#: How many times more a contender of ``calls`` calls in a row repeats than the others.
PER_CALL_REPEAT = 3


@dataclass
class Measurement:
    """All runs of one contender at one size."""

    api: str
    who: str
    op: str
    leaves: int
    slow: bool
    #: ``(repetition, seconds)`` per run.
    runs: list[tuple[int, float]] = field(default_factory=list)
    #: Requests of the first run, per method (``{"Txn": 79, "Range": 1}``).
    requests: dict[str, int] = field(default_factory=dict)
    #: Seconds of untimed setup this contender's runs needed.
    setup_seconds: float = 0.0
    #: ``(repetition, client CPU s, server CPU s)`` per run: this process and its
    #: children (etcdctl), and the etcd process.
    cpu: list[tuple[int, float, float]] = field(default_factory=list)
    #: CPU seconds that other processes of the machine used during the timed runs.
    foreign_cpu: float = 0.0
    #: Calls per run: times and CPU are per call (single-key operations: 200; concurrent
    #: gets: 10 batches, so per batch).
    calls: int = 1
    #: Why the contender failed at this size (``"PeerFailed: ..."``), else ``None``.
    failed: str | None = None

    @property
    def label(self) -> str:
        return f"{self.who} {self.api} {self.op}"

    @property
    def times(self) -> list[float]:
        return [seconds for _, seconds in self.runs]

    def to_json(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "who": self.who,
            "op": self.op,
            "leaves": self.leaves,
            "slow": self.slow,
            "runs": [{"rep": rep, "seconds": s} for rep, s in self.runs],
            "requests": self.requests,
            "setup_seconds": self.setup_seconds,
            "cpu": [{"rep": r, "client": c, "server": e} for r, c, e in self.cpu],
            "foreign_cpu": self.foreign_cpu,
            "calls": self.calls,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        return cls(
            data["api"],
            data["who"],
            data["op"],
            data["leaves"],
            data["slow"],
            [(r["rep"], r["seconds"]) for r in data["runs"]],
            dict(data["requests"]),
            data.get("setup_seconds", 0.0),
            [(c["rep"], c["client"], c["server"]) for c in data.get("cpu", [])],
            data.get("foreign_cpu", 0.0),
            data.get("calls", 1),
            data.get("failed"),
        )


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def client_cpu() -> float:
    """CPU seconds of this process (all threads, ns resolution) and of its waited-for
    children (etcdctl, in clock ticks)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def machine_busy() -> float:
    """CPU seconds all cores of the machine have been busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICK


def process_cpu(pid: int | None) -> float:
    """CPU seconds of process ``pid`` so far: the sum of its threads' run time in
    ``/proc/<pid>/task/*/schedstat`` (ns), else ``/proc/<pid>/stat`` (clock ticks);
    0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def server_gc(endpoint: str) -> None:
    """Make etcd run a full garbage collection now (Go's ``runtime.GC``) and wait
    for it to end: ``GET /debug/pprof/heap?gc=1``, served with ``--enable-pprof``.

    :raises OSError: etcd did not answer (or was started without ``--enable-pprof``).
    """
    with urllib.request.urlopen(f"{endpoint}/debug/pprof/heap?gc=1", timeout=60) as answer:
        answer.read()


def _schedule(
    todo: Sequence[Contender], state: dict[str, State], rng: random.Random
) -> list[Contender]:
    """A random order that prefers, at each step, a contender needing the current state."""
    left = list(todo)
    order: list[Contender] = []
    simulated = dict(state)
    while left:
        ready = [c for c in left if c.needs in (State.ANY, simulated[c.api])]
        pick = rng.choice(ready or left)
        left.remove(pick)
        order.append(pick)
        if pick.gives is not State.ANY:
            simulated[pick.api] = pick.gives
    return order


def measure_size(
    clients: Clients,
    work: Workload,
    apis: Sequence[str],
    repeat: int,
    budget: float,
    rng: random.Random,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[Measurement]:
    """Time every contender on ``work``, ``repeat`` times each (fewer past ``budget`` s;
    :data:`PER_CALL_REPEAT` times more for those of several calls in a row).

    The path must be empty on each API when this starts.  The first run of each
    contender is checked (it stored or read the right data) and its requests are
    counted from the server's ``/metrics``, outside the timing.

    :raises AssertionError: a contender stored or read the wrong data.
    """
    cs = contenders(clients, work, apis)
    setups = {api: Setup(api, clients, work) for api in apis}
    state = {api: State.EMPTY for api in apis}
    found = {
        c.label: Measurement(c.api, c.who, c.op, work.leaves, c.slow, calls=c.calls) for c in cs
    }
    spent = dict.fromkeys(found, 0.0)
    endpoint = clients.server.endpoint
    server_pid = clients.server.pid
    for rep in range(repeat * PER_CALL_REPEAT):
        todo = [
            c
            for c in cs
            if not found[c.label].failed
            and (rep < repeat or c.calls > 1)
            and (rep == 0 or spent[c.label] < budget)
        ]
        if not todo:
            break
        for c in _schedule(todo, state, rng):
            m = found[c.label]
            if c.needs is not State.ANY and state[c.api] is not c.needs:
                started = time.perf_counter()
                setups[c.api](c.needs)
                took = time.perf_counter() - started
                m.setup_seconds += took
                spent[c.label] += took
                state[c.api] = c.needs
            server_gc(endpoint)
            gc.collect()
            before = request_counts(endpoint, c.api) if rep == 0 else None
            cpu0, server0, busy0 = client_cpu(), process_cpu(server_pid), machine_busy()
            started = time.perf_counter()
            try:
                result = c.run()
            except Exception as exc:  # noqa: BLE001 - recorded and reported, the run goes on
                m.failed = f"{type(exc).__name__}: {exc}"[:300]
                if c.needs is not State.ANY:
                    state[c.api] = State.UNKNOWN
                log(f"  {work.leaves:>7} leaves  rep {rep}  {c.label:<28} FAILED: {m.failed}")
                continue
            seconds = time.perf_counter() - started
            client, server = client_cpu() - cpu0, process_cpu(server_pid) - server0
            own, worker = client, 0.0
            if isinstance(result, Timed):  # a worker process timed itself
                seconds, client, result = result.seconds, result.cpu, result.value
                worker = client
            m.foreign_cpu += max(0.0, machine_busy() - busy0 - own - worker - server)
            spent_here = seconds
            seconds, client, server = seconds / c.calls, client / c.calls, server / c.calls
            m.cpu.append((rep, client, server))
            if c.gives is not State.ANY:
                state[c.api] = c.gives
            if rep == 0:
                m.requests = difference(request_counts(endpoint, c.api), before)
                if c.check is not None:
                    c.check(result)
            del result
            m.runs.append((rep, seconds))
            spent[c.label] += spent_here
            per = " per batch" if c.op == GATHER else (" per call" if c.calls > 1 else "")
            log(
                f"  {work.leaves:>7} leaves  rep {rep}  {c.label:<28} "
                f"{seconds * 1000:10.3f} ms{per}"
            )
    return list(found.values())


def cleanup(clients: Clients) -> dict[str, Any]:
    """Delete every benchmark key, compact the history and defragment the backend.

    :returns: the server's ``endpoint status`` after it (``dbSize`` in bytes …).
    """
    clients.gw.delete_prefix(PREFIX + "/")
    with contextlib.suppress(etcd.EtcdKeyNotFound):  # nothing stored on v2 yet
        clients.pe.delete(PREFIX, recursive=True)
    header = clients.gw.post(clients.gw.get_url("/kv/range"), json={"key": "AA=="})["header"]
    try:
        clients.gw.post(
            clients.gw.get_url("/kv/compaction"),
            json={"revision": int(header["revision"]), "physical": True},
        )
    except etcd3gw.exceptions.ConnectionTimeoutError:
        # a physical compaction after a full run can outlast the timeout; etcd goes on
        print("cleanup: compaction still running after the timeout", file=sys.stderr)
    except etcd3gw.exceptions.Etcd3Exception as exc:  # v2-only runs: no new revision
        if "compacted" not in str(getattr(exc, "detail_text", "")):
            raise
    clients.server.etcdctl("defrag")
    status = json.loads(clients.server.etcdctl("endpoint", "status", "-w", "json").stdout)
    return dict(status[0].get("Status", {}))
