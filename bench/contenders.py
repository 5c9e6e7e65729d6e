"""The contenders: link.etcd and what users would write instead, per API and operation.

Every contender works on the same tree at the same etcd key and sends the same
keys and values, taken from ``codec.flatten(codec.encode(tree), key)``:

``link.etcd``
    ``client[path] = tree`` into an empty path (*write*) and over a tree of the
    same shape whose every value differs (*replace*), ``client[path]`` (*read*),
    ``del client[path]`` (*delete*).
``floor``
    The fewest requests etcd allows.  v3: raw ``etcd3gw`` transactions of 128
    puts each (etcd's ``--max-txn-ops``), one ``get_prefix``, one
    ``delete_prefix``.  v2: one recursive ``python-etcd`` ``read`` (the request
    and its JSON parse, nothing walked) and one recursive ``delete``.  v2 has no
    multi-key write, so it has no write floor.
``hand loop``
    What users of the other clients write today.  v3: one ``etcd3gw.put`` per
    leaf; the read lists the subtree's keys with one ``keys_only`` range (v3 has
    no directories: a range is how one lists a "directory") and then ``get`` s
    each key, building nested dicts of raw values.  This is the cheapest
    node-by-node walk (one request per leaf plus one); a walk that listed each
    directory level again would cost more.  v2: one ``python-etcd`` ``write``
    per leaf, sequentially; the read walks directory by directory with one
    non-recursive ``read`` each, recursing into sub-directories.
``etcdctl``
    The official client as a reference, v3 only: one ``etcdctl txn`` process per
    128 puts, one ``etcdctl get --prefix`` (its text output parsed into pairs),
    one ``etcdctl del --prefix``.
``link.etcd gateway``
    link.etcd's v3 API through the JSON gateway (``transport="gateway"``) while
    ``link.etcd`` is its native gRPC transport (``transport="grpc"``); only when
    link.etcd has the ``transport`` setting (else ``link.etcd`` v3 is the only
    transport there is, and runs alone).
``link.etcd aio``
    link.etcd's asyncio client (``AsyncEtcdMiddleware``, ``transport="grpc"``),
    in this process on one event loop kept for the whole run (its channel is
    opened before the first timed run): ``await client.set(path, tree)`` into an
    empty path (*write*) and ``await client.get(path)`` (*read*), each timed run
    one ``loop.run_until_complete``.
``python3-etcd3``, ``etcd-sdk-python``, ``aetcd``
    The gRPC clients, each in its own worker process (:mod:`bench.peers`), timed
    inside the worker around the client calls: transactions of 128 puts, one
    ``get_prefix`` turned into ``(key, value)`` pairs, one ``delete_prefix``.
    ``<peer> + nesting``: the same ``get_prefix`` followed by the loop a user
    writes to nest the pairs into a dict of dicts (:func:`bench.peers.nest`).
*key get*, *key put*
    :data:`CALLS` single-key reads (``client['/x']``) or leaf writes
    (``client['/x'] = 'v'``) in a row, timed per call, for link.etcd, the floor
    (etcd3gw) and each peer.
*concurrent gets*
    The async clients only (``link.etcd aio`` and aetcd, :data:`~bench.peers.ASYNC_PEERS`):
    :data:`BATCHES` batches in a row of :data:`CONCURRENT` gets of the key
    ``/x`` in flight at once (``asyncio.gather``), timed per batch; the report
    also gives gets per second (``CONCURRENT / time per batch``).

A contender needs the path in one :class:`State` and leaves it in another; the
runner restores the needed state between runs with the untimed :class:`Setup`
of the API (the floor's writes and deletes on v3, link.etcd's on v2).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import etcd
from etcd3gw.client import Etcd3Client

from link.etcd import EtcdMiddleware, codec
from link.etcd.testing import EtcdServer

from .peers import ASYNC_PEERS, PeerProcess, Timed, start_peers
from .trees import make_tree

__all__ = [
    "API_V2",
    "API_V3",
    "BATCH",
    "BATCHES",
    "CONCURRENT",
    "Clients",
    "Contender",
    "Setup",
    "State",
    "Timed",
    "Workload",
    "contenders",
    "link_transports",
]

API_V3 = "v3"
API_V2 = "v2"
#: Puts per transaction for the floor and etcdctl (etcd's default --max-txn-ops).
BATCH = 128
#: Middleware prefix and path of every benchmark tree: the etcd key is ``/bench/tree``.
PREFIX = "/bench"
PATH = "/tree"
#: Seconds any single request may take (100,000-key reads and deletes included).
TIMEOUT = 120.0

LINK = "link.etcd"
FLOOR = "floor"
HAND = "hand loop"
ETCDCTL = "etcdctl"
#: link.etcd's v3 API through the JSON gateway (when it has the ``transport`` setting).
GATEWAY = "link.etcd gateway"
#: link.etcd's asyncio client (``AsyncEtcdMiddleware``, gRPC transport).
AIO = "link.etcd aio"
#: Suffix of a peer whose ``get_prefix`` is followed by the user's nesting loop.
NESTED = " + nesting"
#: Middleware path, etcd key and value of the single-key operations.
KEY = "/x"
KEY_ETCD = PREFIX + KEY
KEY_VALUE = "v"
#: Calls in a row of a single-key operation (its time is reported per call).
CALLS = 200
#: The operation of :data:`CONCURRENT` single-key gets in flight at once (async clients).
GATHER = "concurrent gets"
#: Gets in flight at once in one batch of :data:`GATHER`.
CONCURRENT = 100
#: Batches in a row per run of :data:`GATHER` (its time is reported per batch).
BATCHES = 10


class State(enum.Enum):
    """What the benchmark path holds."""

    EMPTY = "empty"
    A = "tree A"
    B = "tree B (same keys, other values)"
    #: (needs/gives) any state: the single-key operations, which leave the tree alone.
    ANY = "any"
    #: After a failed run: whatever it left; the next contender's setup restores a state.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Workload:
    """One tree size: the trees and the keys they are stored as."""

    leaves: int
    key: str
    tree_a: dict[str, Any]
    tree_b: dict[str, Any]
    kv_a: list[tuple[str, bytes]]
    kv_b: list[tuple[str, bytes]]

    @classmethod
    def make(cls, leaves: int) -> Workload:
        """Trees A and B (same shape, every value different) of ``leaves`` leaves."""
        key = PREFIX + PATH
        tree_a = make_tree(leaves)
        tree_b = make_tree(leaves, variant=1)
        kv_a = codec.flatten(codec.encode(tree_a), key)
        kv_b = codec.flatten(codec.encode(tree_b), key)
        if len(kv_a) != leaves or [k for k, _ in kv_a] != [k for k, _ in kv_b]:
            raise AssertionError("benchmark trees must have exactly `leaves` identical keys")
        return cls(leaves, key, tree_a, tree_b, kv_a, kv_b)


@dataclass(frozen=True)
class Contender:
    """One timed operation.

    :param run: the timed call; returns what the check needs.
    :param check: untimed verification of the first run at each size (raises
        ``AssertionError``), or ``None``.
    :param slow: one request per leaf (or one process per 128 leaves): the
        runner's time budget cuts its repetitions at large sizes.
    :param calls: calls the run makes in a row; its time and CPU are reported
        per call.  ``run`` may return a :class:`Timed` (a peer's worker timed
        itself): the runner then takes its time and CPU instead of its own.
    """

    api: str
    who: str
    op: str
    needs: State
    gives: State
    run: Callable[[], Any]
    check: Callable[[Any], None] | None = None
    slow: bool = False
    calls: int = 1

    @property
    def label(self) -> str:
        """``"link.etcd v3 write"``."""
        return f"{self.who} {self.api} {self.op}"


@dataclass
class Clients:
    """Long-lived clients of every kind against one server (created once, reused)."""

    server: EtcdServer
    v3: EtcdMiddleware = field(init=False)
    v2: EtcdMiddleware = field(init=False)
    gw: Etcd3Client = field(init=False)
    pe: etcd.Client = field(init=False)
    #: link.etcd through the JSON gateway, when it has the ``transport`` setting.
    v3gw: EtcdMiddleware | None = field(init=False, default=None)
    #: The gRPC peers' workers, by name (:meth:`start_peers`).
    peers: dict[str, PeerProcess] = field(init=False, default_factory=dict)
    #: Why each peer that could not be started was left out.
    peers_missing: dict[str, str] = field(init=False, default_factory=dict)
    #: link.etcd's v3 transports: ``("grpc", "gateway")``, or ``()`` without the setting.
    transports: tuple[str, ...] = field(init=False, default=())
    #: The event loop of the async contenders, one for the whole run (``None``
    #: when this link.etcd has no ``link.etcd.aio``).
    loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)
    #: link.etcd's asyncio client (gRPC), created and connected on :attr:`loop`.
    aio: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        url = self.server.endpoint
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 2379
        self.transports = link_transports()
        grpc: dict[str, Any] = {"transport": "grpc"} if self.transports else {}
        self.v3 = EtcdMiddleware(
            endpoints=[url], api="v3", prefix=PREFIX, read_timeout=TIMEOUT, **grpc
        )
        if self.transports:
            self.v3gw = EtcdMiddleware(
                endpoints=[url], api="v3", prefix=PREFIX, read_timeout=TIMEOUT,
                transport="gateway",
            )  # fmt: skip
        self.v2 = EtcdMiddleware(endpoints=[url], api="v2", prefix=PREFIX, read_timeout=TIMEOUT)
        self.gw = Etcd3Client(host=host, port=port, api_path="/v3/", timeout=TIMEOUT)
        self.pe = etcd.Client(host=host, port=port, read_timeout=TIMEOUT)
        self._start_aio(url)

    def _start_aio(self, url: str) -> None:
        """The asyncio client on its own loop, its channel opened by one untimed get."""
        try:
            from link.etcd.aio import AsyncEtcdMiddleware
        except ImportError:  # a link.etcd without the asyncio client: no async contenders
            return
        self.loop = asyncio.new_event_loop()
        grpc: dict[str, Any] = {"transport": "grpc"} if self.transports else {}
        self.aio = AsyncEtcdMiddleware(endpoints=[url], prefix=PREFIX, read_timeout=TIMEOUT, **grpc)
        self.loop.run_until_complete(self.aio.get("/no-such-key", None))

    def start_peers(self, log: Callable[[str], None]) -> None:
        """Start a worker per gRPC peer; those that fail are logged and left out."""
        self.peers, self.peers_missing = start_peers(self.server.endpoint, log=log)

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()
        self.v3.close()
        if self.v3gw is not None:
            self.v3gw.close()
        self.v2.close()
        self.gw.session.close()
        self.pe.http.clear()
        if self.loop is not None:
            if self.aio is not None:
                self.loop.run_until_complete(self.aio.aclose())
            self.loop.close()


def link_transports() -> tuple[str, ...]:
    """``("grpc", "gateway")`` when :class:`~link.etcd.settings.EtcdSettings` has a
    ``transport`` field, else ``()``: link.etcd v3 then runs as one contender."""
    import dataclasses

    from link.etcd.settings import EtcdSettings

    names = {f.name for f in dataclasses.fields(EtcdSettings)}
    return ("grpc", "gateway") if "transport" in names else ()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- v3 -----------------------------------------------------------------------


def floor_v3_write(gw: Etcd3Client, kvs: Sequence[tuple[str, bytes]]) -> None:
    """Raw etcd3gw transactions of :data:`BATCH` puts each, in document order."""
    for start in range(0, len(kvs), BATCH):
        gw.transaction(
            {
                "compare": [],
                "success": [
                    {"request_put": {"key": _b64(k.encode()), "value": _b64(v)}}
                    for k, v in kvs[start : start + BATCH]
                ],
            }
        )


def floor_v3_delete(gw: Etcd3Client, key: str) -> None:
    """One ``delete_prefix`` of ``key/`` (a benchmark tree has no leaf at ``key``)."""
    gw.delete_prefix((key + "/").encode())


def v3_pairs(gw: Etcd3Client, key: str) -> dict[str, bytes]:
    """Every key below ``key/`` and its value, with one raw ``get_prefix``."""
    return {meta["key"].decode(): value for value, meta in gw.get_prefix((key + "/").encode())}


def hand_v3_read(gw: Etcd3Client, key: str) -> dict[str, Any]:
    """One ``keys_only`` range listing the subtree, then one ``get`` per key."""
    prefix = (key + "/").encode()
    end = _range_end(prefix).decode("latin-1")  # etcd3gw encodes str as latin-1
    listing = gw.get(prefix, metadata=True, range_end=end, keys_only=True)
    tree: dict[str, Any] = {}
    for _, meta in listing:
        leaf_key: bytes = meta["key"]
        values = gw.get(leaf_key)
        *dirs, name = leaf_key[len(prefix) :].decode().split("/")
        node = tree
        for segment in dirs:
            node = node.setdefault(segment, {})
        node[name] = values[0] if values else None
    return tree


def etcdctl_write(server: EtcdServer, kvs: Sequence[tuple[str, bytes]]) -> None:
    """One ``etcdctl txn`` (compares, success ops, failure ops from stdin) per BATCH puts."""
    for start in range(0, len(kvs), BATCH):
        ops = "".join(
            f"put {json.dumps(k)} {json.dumps(v.decode())}\n" for k, v in kvs[start : start + BATCH]
        )
        server.etcdctl("txn", input=f"\n{ops}\n\n")


def etcdctl_read(server: EtcdServer, key: str) -> dict[str, str]:
    """``etcdctl get --prefix key/``; its text output alternates key and value lines."""
    lines = server.etcdctl("get", "--prefix", key + "/").stdout.splitlines()
    return dict(zip(lines[0::2], lines[1::2], strict=True))


def etcdctl_delete(server: EtcdServer, key: str) -> None:
    server.etcdctl("del", "--prefix", key + "/")


def link_get_many(client: EtcdMiddleware, calls: int) -> Any:
    """``client[KEY]`` ``calls`` times; the last value."""
    value = None
    for _ in range(calls):
        value = client[KEY]
    return value


def link_put_many(client: EtcdMiddleware, calls: int) -> None:
    """``client[KEY] = KEY_VALUE`` ``calls`` times."""
    for _ in range(calls):
        client[KEY] = KEY_VALUE


def gw_get_many(gw: Etcd3Client, calls: int) -> bytes | None:
    values: list[bytes] = []
    for _ in range(calls):
        values = gw.get(KEY_ETCD.encode())
    return values[0] if values else None


def gw_put_many(gw: Etcd3Client, calls: int) -> None:
    for _ in range(calls):
        gw.put(KEY_ETCD.encode(), KEY_VALUE.encode())


def aio_gather_many(
    loop: asyncio.AbstractEventLoop, client: Any, concurrent: int, batches: int
) -> list[Any]:
    """On ``loop``: ``batches`` batches in a row of ``concurrent``
    ``await client.get(KEY)`` in flight at once (``asyncio.gather``); the last
    batch's values."""

    async def run() -> list[Any]:
        values: list[Any] = []
        for _ in range(batches):
            values = await asyncio.gather(*(client.get(KEY) for _ in range(concurrent)))
        return values

    return loop.run_until_complete(run())


def count_leaves(tree: Any) -> int:
    """Leaves of a nested ``dict`` (values that are not dicts)."""
    if isinstance(tree, dict):
        return sum(count_leaves(child) for child in tree.values())
    return 1


# -- v2 -----------------------------------------------------------------------


def hand_v2_write(pe: etcd.Client, kvs: Sequence[tuple[str, bytes]]) -> None:
    """One python-etcd ``write`` per leaf, sequentially (directories appear implicitly)."""
    for k, v in kvs:
        pe.write(k, v.decode())


def hand_v2_read(pe: etcd.Client, key: str) -> dict[str, Any]:
    """Walk directory by directory: one non-recursive ``read`` per directory."""
    tree: dict[str, Any] = {}
    for child in pe.read(key).children:
        name = child.key.rsplit("/", 1)[-1]
        tree[name] = hand_v2_read(pe, child.key) if child.dir else child.value
    return tree


def floor_v2_read(pe: etcd.Client, key: str) -> etcd.EtcdResult:
    """One recursive ``read``: the request and python-etcd's JSON parse of the answer."""
    return pe.read(key, recursive=True)


def floor_v2_delete(pe: etcd.Client, key: str) -> None:
    pe.delete(key, recursive=True)


def v2_leaf_count(result: etcd.EtcdResult) -> int:
    return sum(1 for _ in result.leaves)


# -- setups ---------------------------------------------------------------------


class Setup:
    """Untimed state changes of one API, with the cheapest reliable writer it has."""

    def __init__(self, api: str, clients: Clients, work: Workload) -> None:
        self.api = api
        self.clients = clients
        self.work = work

    def __call__(self, state: State) -> None:
        c, w = self.clients, self.work
        if self.api == API_V3:
            if state is State.EMPTY:
                floor_v3_delete(c.gw, w.key)
            else:  # A and B have the same keys: the puts overwrite every value
                floor_v3_write(c.gw, w.kv_a if state is State.A else w.kv_b)
            return
        if state is State.EMPTY:
            with contextlib.suppress(etcd.EtcdKeyNotFound):
                floor_v2_delete(c.pe, w.key)
        else:
            c.v2[PATH] = w.tree_a if state is State.A else w.tree_b


# -- the list ---------------------------------------------------------------------


def contenders(clients: Clients, work: Workload, apis: Sequence[str]) -> list[Contender]:
    """Every contender for ``work``, for the APIs asked for (``"v3"``, ``"v2"``)."""
    out: list[Contender] = []
    if API_V3 in apis:
        # untimed: the single key the single-key operations read, and each
        # peer's copy of the pairs to write
        clients.gw.put(KEY_ETCD.encode(), KEY_VALUE.encode())
        for peer in clients.peers.values():
            peer.load(work.key, work.kv_a)
        out.extend(_v3(clients, work))
    if API_V2 in apis:
        out.extend(_v2(clients, work))
    return out


def _library(
    api: str,
    client: Any,
    w: Workload,
    stored_a: Callable[[Any], None],
    deleted: Callable[[Any], None],
    who: str = LINK,
) -> Iterator[Contender]:
    """link.etcd's own contenders on one API: write, replace, read, delete."""
    E, A, B = State.EMPTY, State.A, State.B

    def write() -> None:
        client[PATH] = w.tree_a

    def delete() -> None:
        del client[PATH]

    def tree_a(result: Any) -> None:
        assert result == w.tree_a, "link.etcd read back something else than tree A"

    yield Contender(api, who, "write", E, A, write, stored_a)
    yield Contender(api, who, "replace", B, A, write, stored_a)
    yield Contender(api, who, "read", A, A, lambda: client[PATH], tree_a)
    yield Contender(api, who, "delete", A, E, delete, deleted)


def _v3(c: Clients, w: Workload) -> Iterator[Contender]:
    E, A = State.EMPTY, State.A
    expected = dict(w.kv_a)
    gw, server, key = c.gw, c.server, w.key

    def stored_a(_: Any) -> None:
        assert v3_pairs(gw, key) == expected, "the stored keys/values differ from tree A"

    def deleted(_: Any) -> None:
        assert not v3_pairs(gw, key), "keys left after delete"

    def n_pairs(result: Any) -> None:
        assert len(result) == w.leaves, f"{len(result)} keys read, {w.leaves} expected"

    def n_leaves(result: Any) -> None:
        assert count_leaves(result) == w.leaves, "the walk found a different number of leaves"

    def etcdctl_pairs(result: Any) -> None:
        assert {k: v.encode() for k, v in result.items()} == expected, "etcdctl read differs"

    def key_read(result: Any) -> None:
        assert result in (KEY_VALUE, KEY_VALUE.encode()), f"{KEY_ETCD} read {result!r}"

    def key_written(_: Any) -> None:
        assert gw.get(KEY_ETCD.encode()) == [KEY_VALUE.encode()], f"{KEY_ETCD} not written"

    def count(result: Any) -> None:
        assert result == w.leaves, f"{result} keys or leaves read, {w.leaves} expected"

    ANY = State.ANY
    yield from _library(API_V3, c.v3, w, stored_a, deleted)
    if c.v3gw is not None:
        yield from _library(API_V3, c.v3gw, w, stored_a, deleted, GATEWAY)
    if c.loop is not None and c.aio is not None:
        yield from _aio(c.loop, c.aio, w, stored_a)
    for who, client in ((LINK, c.v3), (GATEWAY, c.v3gw)):
        if client is None:
            continue
        yield Contender(
            API_V3, who, "key get", ANY, ANY, partial(link_get_many, client, CALLS), key_read,
            calls=CALLS,
        )  # fmt: skip
        yield Contender(
            API_V3, who, "key put", ANY, ANY, partial(link_put_many, client, CALLS),
            key_written, calls=CALLS,
        )  # fmt: skip
    yield Contender(
        API_V3, FLOOR, "key get", ANY, ANY, lambda: gw_get_many(gw, CALLS), key_read, calls=CALLS
    )
    yield Contender(
        API_V3, FLOOR, "key put", ANY, ANY, lambda: gw_put_many(gw, CALLS), key_written,
        calls=CALLS,
    )  # fmt: skip
    for name, peer in c.peers.items():
        yield from _peer(name, peer, stored_a, deleted, count, key_read, key_written)
    yield Contender(API_V3, FLOOR, "write", E, A, lambda: floor_v3_write(gw, w.kv_a), stored_a)
    yield Contender(
        API_V3, FLOOR, "read", A, A, lambda: gw.get_prefix((key + "/").encode()), n_pairs
    )
    yield Contender(API_V3, FLOOR, "delete", A, E, lambda: floor_v3_delete(gw, key), deleted)
    yield Contender(
        API_V3, HAND, "write", E, A, lambda: [gw.put(k.encode(), v) for k, v in w.kv_a],
        stored_a, slow=True,
    )  # fmt: skip
    yield Contender(API_V3, HAND, "read", A, A, lambda: hand_v3_read(gw, key), n_leaves, slow=True)
    yield Contender(
        API_V3, ETCDCTL, "write", E, A, lambda: etcdctl_write(server, w.kv_a), stored_a,
        slow=True,
    )  # fmt: skip
    yield Contender(API_V3, ETCDCTL, "read", A, A, lambda: etcdctl_read(server, key), etcdctl_pairs)
    yield Contender(API_V3, ETCDCTL, "delete", A, E, lambda: etcdctl_delete(server, key), deleted)


def _aio(
    loop: asyncio.AbstractEventLoop, client: Any, w: Workload, stored_a: Callable[[Any], None]
) -> Iterator[Contender]:
    """link.etcd's asyncio client (v3, gRPC): write, read and concurrent gets, each
    run one ``loop.run_until_complete`` on the run's one loop."""
    E, A, ANY = State.EMPTY, State.A, State.ANY

    def tree_a(result: Any) -> None:
        assert result == w.tree_a, "link.etcd aio read back something else than tree A"

    yield Contender(
        API_V3, AIO, "write", E, A, lambda: loop.run_until_complete(client.set(PATH, w.tree_a)),
        stored_a,
    )  # fmt: skip
    yield Contender(
        API_V3, AIO, "read", A, A, lambda: loop.run_until_complete(client.get(PATH)), tree_a
    )
    yield Contender(
        API_V3, AIO, GATHER, ANY, ANY,
        lambda: aio_gather_many(loop, client, CONCURRENT, BATCHES), gathered, calls=BATCHES,
    )  # fmt: skip


def gathered(result: Any) -> None:
    """The check of a batch of concurrent gets: every get read the key's value."""
    values = result if isinstance(result, list) else [result]
    assert len(values) == CONCURRENT, f"{len(values)} gets answered, {CONCURRENT} expected"
    assert all(v in (KEY_VALUE, KEY_VALUE.encode()) for v in values), f"{KEY_ETCD} read {values!r}"


def _v2(c: Clients, w: Workload) -> Iterator[Contender]:
    E, A = State.EMPTY, State.A
    pe, key = c.pe, w.key

    def stored_a(_: Any) -> None:
        assert c.v2[PATH] == w.tree_a, "link.etcd v2 reads back something else than tree A"

    def deleted(_: Any) -> None:
        assert PATH not in c.v2, "the tree is still there after delete"

    def n_result(result: Any) -> None:
        assert v2_leaf_count(result) == w.leaves, "the recursive read has other leaves"

    def n_leaves(result: Any) -> None:
        assert count_leaves(result) == w.leaves, "the walk found a different number of leaves"

    yield from _library(API_V2, c.v2, w, stored_a, deleted)
    yield Contender(API_V2, FLOOR, "read", A, A, lambda: floor_v2_read(pe, key), n_result)
    yield Contender(API_V2, FLOOR, "delete", A, E, lambda: floor_v2_delete(pe, key), deleted)
    yield Contender(
        API_V2, HAND, "write", E, A, lambda: hand_v2_write(pe, w.kv_a), stored_a, slow=True
    )
    yield Contender(API_V2, HAND, "read", A, A, lambda: hand_v2_read(pe, key), n_leaves, slow=True)


def _peer(
    name: str,
    peer: PeerProcess,
    stored_a: Callable[[Any], None],
    deleted: Callable[[Any], None],
    count: Callable[[Any], None],
    key_read: Callable[[Any], None],
    key_written: Callable[[Any], None],
) -> Iterator[Contender]:
    """One gRPC peer's contenders (v3), run by its worker (which times itself)."""
    E, A, ANY = State.EMPTY, State.A, State.ANY
    yield Contender(API_V3, name, "write", E, A, lambda: peer.op("write"), stored_a)
    yield Contender(API_V3, name, "read", A, A, lambda: peer.op("read"), count)
    yield Contender(API_V3, name + NESTED, "read", A, A, lambda: peer.op("nest"), count)
    yield Contender(API_V3, name, "delete", A, E, lambda: peer.op("delete"), deleted)
    yield Contender(
        API_V3, name, "key get", ANY, ANY, lambda: peer.op("get1", key=KEY_ETCD, calls=CALLS),
        key_read, calls=CALLS,
    )  # fmt: skip
    yield Contender(
        API_V3, name, "key put", ANY, ANY,
        lambda: peer.op("put1", key=KEY_ETCD, value=KEY_VALUE, calls=CALLS),
        key_written, calls=CALLS,
    )  # fmt: skip
    if name in ASYNC_PEERS:
        yield Contender(
            API_V3, name, GATHER, ANY, ANY,
            lambda: peer.op(
                "gather", key=KEY_ETCD, concurrent=CONCURRENT, batches=BATCHES
            ),
            gathered, calls=BATCHES,
        )  # fmt: skip
