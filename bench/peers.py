"""The gRPC peers of link.etcd, each in its own long-lived worker process.

python3-etcd3, etcd-sdk-python (imported as ``pyetcd``) and aetcd each register
their own ``kv.proto`` in protobuf's default descriptor pool, so they cannot
share one process (FACTS.md: "duplicate file name").  Each runs in a worker,
``python -m bench.peers NAME ENDPOINT``, that reads one JSON command a line on
stdin and answers one JSON line on stdout:

``{"cmd": "load", "key": "/bench/tree", "kv": [[key, value], ...]}``
    Keep the pairs of the next size (values as UTF-8 text; untimed).
``{"cmd": "write"}``
    Transactions of :data:`BATCH` puts each, in document order.
``{"cmd": "read"}``
    One ``get_prefix`` of ``key/``, its answer turned into ``(key, value)``
    pairs of bytes (the library's documented way to consume it).
``{"cmd": "nest"}``
    The same ``get_prefix``, then the loop a user writes to nest the pairs into
    a dict of dicts (:func:`nest`: split on ``/``, ``setdefault`` down the path,
    values decoded as UTF-8).
``{"cmd": "delete"}``
    One ``delete_prefix`` of ``key/``.
``{"cmd": "get1", "key": "/bench/x", "calls": 200}``, ``{"cmd": "put1", ...}``
    ``calls`` single-key gets (or puts of ``value``) in a row.
``{"cmd": "gather", "key": "/bench/x", "concurrent": 100, "batches": 10}``
    Async peers only (:data:`ASYNC_PEERS`): ``batches`` batches in a row of
    ``concurrent`` gets of ``key`` in flight at once (``asyncio.gather``) on the
    worker's event loop; the result is the last batch's values.

Each answer is ``{"seconds": s, "cpu": c, "result": r}``: the worker's own wall
time and process CPU time around the client calls only (not the pipe, not the
JSON), and a small result for the untimed check (a count or a value).  A failed
call answers ``{"error": "..."}``; a peer that cannot be imported or connected
answers its first line (``{"ready": false, "error": ...}``) and is left out.

Every peer raises gRPC's receive limit (``grpc.max_receive_message_length``,
4 MiB by default: too small for a ``get_prefix`` of 100,000 keys); all three
let the caller pass channel options.

This module imports nothing from link.etcd or the rest of :mod:`bench` at
module level: a worker loads only its peer.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "ASYNC_PEERS",
    "PEERS",
    "PeerFailed",
    "PeerProcess",
    "Timed",
    "nest",
    "start_peers",
]

#: The peers, by the name they carry in the report (their PyPI name).
PEERS = ("python3-etcd3", "etcd-sdk-python", "aetcd")
#: The peers with an asyncio API: they also run the ``gather`` command.
ASYNC_PEERS = ("aetcd",)
#: Puts per transaction (etcd's default ``--max-txn-ops``).
BATCH = 128
#: gRPC channel options of every peer: no receive limit.
CHANNEL_OPTIONS = {"grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1}
#: Seconds any single call may take.
TIMEOUT = 120.0


class PeerFailed(RuntimeError):
    """A peer's operation failed (the worker answered an error or died)."""


@dataclass(frozen=True)
class Timed:
    """What a contender measured itself: the runner takes these instead of its own clock.

    :param seconds: wall time around the client calls only.
    :param cpu: client CPU seconds (the worker process) over the same span.
    :param value: what the untimed check needs.
    """

    seconds: float
    cpu: float
    value: Any


def nest(pairs: Iterable[tuple[bytes, bytes]], prefix: bytes) -> dict[str, Any]:
    """The loop a user writes: flat ``(key, value)`` pairs below ``prefix`` to a
    dict of dicts, keys split on ``/``, values decoded as UTF-8 text."""
    tree: dict[str, Any] = {}
    start = len(prefix)
    for key, value in pairs:
        *dirs, name = key[start:].decode().split("/")
        node = tree
        for segment in dirs:
            node = node.setdefault(segment, {})
        node[name] = value.decode()
    return tree


def count_leaves(tree: Any) -> int:
    if isinstance(tree, dict):
        return sum(count_leaves(child) for child in tree.values())
    return 1


# -- inside a worker ------------------------------------------------------------


class _Peer:
    """One peer's client; each method is one timed operation and returns its result."""

    name: ClassVar[str]

    def __init__(self, host: str, port: int) -> None:
        self.kvs: list[tuple[bytes, bytes]] = []
        self.prefix = b""

    def load(self, key: str, kv: Sequence[Sequence[str]]) -> None:
        self.prefix = (key + "/").encode()
        self.kvs = [(k.encode(), v.encode()) for k, v in kv]

    def timed(self, call: Callable[[], Any]) -> dict[str, Any]:
        gc.collect()  # as the parent does before its own contenders
        cpu0 = time.process_time()
        started = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "cpu": time.process_time() - cpu0, "result": result}

    def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["cmd"]
        if op == "write":
            return self.timed(self.write)
        if op == "read":
            return self.timed(lambda: len(self.pairs()))
        if op == "nest":
            return self.timed(lambda: count_leaves(nest(self.pairs(), self.prefix)))
        if op == "delete":
            return self.timed(self.delete)
        key, calls = cmd["key"].encode(), int(cmd["calls"])
        if op == "get1":
            return self.timed(lambda: self.get_many(key, calls))
        if op == "put1":
            value = cmd["value"].encode()
            return self.timed(lambda: self.put_many(key, value, calls))
        raise ValueError(f"unknown command {op!r}")

    def write(self) -> None:
        raise NotImplementedError

    def pairs(self) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def get_many(self, key: bytes, calls: int) -> str | None:
        raise NotImplementedError

    def put_many(self, key: bytes, value: bytes, calls: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Etcd3Like(_Peer):
    """python3-etcd3 and etcd-sdk-python: both forks of python-etcd3, same API."""

    module: ClassVar[str]

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        lib = __import__(self.module)
        options = list(CHANNEL_OPTIONS.items())  # handed to grpc.insecure_channel as is
        self.client = lib.client(host=host, port=port, timeout=TIMEOUT, grpc_options=options)
        self.client.get(b"/bench/no-such-key")  # connect

    def write(self) -> None:
        client, put, kvs = self.client, self.client.transactions.put, self.kvs
        for start in range(0, len(kvs), BATCH):
            client.transaction(
                compare=[], success=[put(k, v) for k, v in kvs[start : start + BATCH]], failure=[]
            )

    def pairs(self) -> list[tuple[bytes, bytes]]:
        return [(meta.key, value) for value, meta in self.client.get_prefix(self.prefix)]

    def delete(self) -> None:
        self.client.delete_prefix(self.prefix)

    def get_many(self, key: bytes, calls: int) -> str | None:
        get = self.client.get
        for _ in range(calls):
            value, _meta = get(key)
        return None if value is None else value.decode()

    def put_many(self, key: bytes, value: bytes, calls: int) -> None:
        put = self.client.put
        for _ in range(calls):
            put(key, value)

    def close(self) -> None:
        self.client.close()


class _PythonEtcd3(_Etcd3Like):
    name = "python3-etcd3"
    module = "etcd3"


class _EtcdSdk(_Etcd3Like):
    name = "etcd-sdk-python"
    module = "pyetcd"


class _Aetcd(_Peer):
    """aetcd (asyncio): each operation runs in the worker's event loop; the time
    is taken inside the coroutine, around the awaited calls."""

    name = "aetcd"

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        import asyncio

        import aetcd

        self.loop = asyncio.new_event_loop()
        self.client = aetcd.Client(
            host=host, port=port, timeout=int(TIMEOUT), options=dict(CHANNEL_OPTIONS)
        )
        self.loop.run_until_complete(self.client.connect())
        self.loop.run_until_complete(self.client.get(b"/bench/no-such-key"))

    def timed(self, call: Callable[[], Any]) -> dict[str, Any]:
        gc.collect()  # as the parent does before its own contenders

        async def measured() -> dict[str, Any]:
            cpu0 = time.process_time()
            started = time.perf_counter()
            result = await call()
            seconds = time.perf_counter() - started
            return {"seconds": seconds, "cpu": time.process_time() - cpu0, "result": result}

        result: dict[str, Any] = self.loop.run_until_complete(measured())
        return result

    def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "read":

            async def read() -> int:
                return len(await self.pairs())

            return self.timed(read)
        if cmd["cmd"] == "nest":

            async def nested() -> int:
                return count_leaves(nest(await self.pairs(), self.prefix))

            return self.timed(nested)
        if cmd["cmd"] == "gather":
            key, concurrent, batches = cmd["key"].encode(), cmd["concurrent"], cmd["batches"]
            return self.timed(lambda: self.gather_many(key, int(concurrent), int(batches)))
        return super().run(cmd)

    async def write(self) -> None:  # type: ignore[override]
        client, put, kvs = self.client, self.client.transactions.put, self.kvs
        for start in range(0, len(kvs), BATCH):
            await client.transaction(
                compare=[], success=[put(k, v) for k, v in kvs[start : start + BATCH]], failure=[]
            )

    async def pairs(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return [(kv.key, kv.value) for kv in await self.client.get_prefix(self.prefix)]

    async def delete(self) -> None:  # type: ignore[override]
        await self.client.delete_prefix(self.prefix)

    async def get_many(self, key: bytes, calls: int) -> str | None:  # type: ignore[override]
        get = self.client.get
        for _ in range(calls):
            found = await get(key)
        return None if found is None else found.value.decode()

    async def put_many(self, key: bytes, value: bytes, calls: int) -> None:  # type: ignore[override]
        put = self.client.put
        for _ in range(calls):
            await put(key, value)

    async def gather_many(self, key: bytes, concurrent: int, batches: int) -> list[str | None]:
        """``batches`` batches in a row of ``concurrent`` gets in flight at once."""
        import asyncio

        get = self.client.get
        found: list[Any] = []
        for _ in range(batches):
            found = await asyncio.gather(*(get(key) for _ in range(concurrent)))
        return [None if kv is None else kv.value.decode() for kv in found]

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


_CLASSES: dict[str, type[_Peer]] = {c.name: c for c in (_PythonEtcd3, _EtcdSdk, _Aetcd)}


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def worker(name: str, endpoint: str) -> int:
    """Serve commands on stdin until it closes."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        peer = _CLASSES[name](parts.hostname or "127.0.0.1", parts.port or 2379)
    except Exception as exc:  # noqa: BLE001 - any import or connect failure leaves it out
        _reply({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    from importlib import metadata

    _reply({"ready": True, "version": metadata.version(name)})
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "load":
                peer.load(cmd["key"], cmd["kv"])
                _reply({"result": len(peer.kvs)})
            else:
                _reply(peer.run(cmd))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which records it
            _reply({"error": f"{type(exc).__name__}: {str(exc)[:500]}"})
    peer.close()
    return 0


# -- in the benchmark process ------------------------------------------------------


class PeerProcess:
    """The parent's handle on one worker.

    :raises PeerFailed: (constructor) the peer could not be imported or connected.
    """

    def __init__(self, name: str, endpoint: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.version = ""
        self._proc: subprocess.Popen[str] | None = None
        self._loaded: list[Any] | None = None
        self._start()

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peers", self.name, self.endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        hello = self._read()
        if not hello.get("ready"):
            self.close()
            raise PeerFailed(hello.get("error", "the worker did not start"))
        self.version = hello.get("version", "")

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            self._proc = None
            raise PeerFailed(f"the {self.name} worker exited (code {code})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self._proc is None:  # died earlier: start again, with the last pairs
            self._start()
            if self._loaded is not None:
                self._ask({"cmd": "load", "key": self._loaded[0], "kv": self._loaded[1]})
        return self._ask(cmd)

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(cmd) + "\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise PeerFailed(f"the {self.name} worker is gone: {exc}") from exc
        answer = self._read()
        if "error" in answer:
            raise PeerFailed(answer["error"])
        return answer

    def load(self, key: str, kvs: Sequence[tuple[str, bytes]]) -> None:
        """Hand the worker the pairs of the next size (untimed)."""
        pairs = [[k, v.decode()] for k, v in kvs]
        self._loaded = [key, pairs]
        self._send({"cmd": "load", "key": key, "kv": pairs})

    def op(self, cmd: str, **args: Any) -> Timed:
        """Run one timed operation in the worker.

        :raises PeerFailed: the peer failed (or its worker died).
        """
        answer = self._send({"cmd": cmd, **args})
        return Timed(answer["seconds"], answer["cpu"], answer["result"])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def start_peers(
    endpoint: str, names: Sequence[str] = PEERS, log: Callable[[str], None] = print
) -> tuple[dict[str, PeerProcess], dict[str, str]]:
    """One worker per peer that starts; the others are logged with their reason.

    :returns: the workers by peer name, and the reason of each peer left out.
    """
    out, missing = {}, {}
    for name in names:
        try:
            out[name] = PeerProcess(name, endpoint)
        except (PeerFailed, OSError) as exc:
            missing[name] = str(exc)
            log(f"peer {name} LEFT OUT: {exc}")
            continue
        log(f"peer {name} {out[name].version}: worker ready")
    return out, missing


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in _CLASSES:
        sys.exit(f"usage: python -m bench.peers {{{','.join(_CLASSES)}}} ENDPOINT")
    raise SystemExit(worker(sys.argv[1], sys.argv[2]))
