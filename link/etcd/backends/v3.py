"""The etcd v3 backend, through etcd3gw's JSON gateway client (``/v3/kv/txn``, ``/v3/kv/range``).

Every read is one ``txn`` of two ranges (the key itself and everything below
``key + '/'``) evaluated at one revision, so a reader sees one consistent state.
A write encodes the whole tree first, reads the subtree's current keys and
values, and sends only what changes (puts of new or changed values, deletes of
stale keys) as transactions of at most ``max_txn_ops`` operations and
``max_request_bytes`` bytes.  Each transaction carries ``compare``s on the mod
revisions of what it covers against the revision of that read; on a failed
compare the write starts again from a fresh read.  When the change fits in one
transaction the replace is atomic.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import msgspec
import requests
from etcd3gw.client import Etcd3Client
from requests.adapters import HTTPAdapter

from .. import codec
from ..codec import Node, iter_flatten
from ..errors import (
    EtcdAuthError,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdPartialWrite,
    EtcdPermissionDenied,
    EtcdSettingsError,
    EtcdTimeout,
)
from ..paths import SEP, range_end
from ..settings import EtcdSettings
from .base import (
    ABSENT,
    OP_OVERHEAD_BYTES,
    REQUEST_OVERHEAD_BYTES,
    WATCH_IDLE_SECONDS,
    Event,
    KeyValue,
    Snapshot,
    check_leaf_sizes,
)

#: Keys per range response page when reading very large subtrees.
PAGE_SIZE = 20_000
#: Transactions of one large (non-atomic) write sent at the same time.
TXNS_IN_FLIGHT = 4
#: Write attempts (initial + retries) when a compare keeps failing.
WRITE_ATTEMPTS = 10

# gRPC status codes carried in the gateway's error bodies.
_UNAUTHENTICATED = 16
_PERMISSION_DENIED = 7
_INVALID_ARGUMENT = 3


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_unb64 = binascii.a2b_base64  # base64.b64decode without its Python-level checks


def _below(key: str) -> tuple[bytes, bytes]:
    """The key range ``[key + '/', range_end)`` holding every key below ``key``."""
    prefix = (key + SEP).encode()
    return prefix, range_end(prefix)


def _range_op(key: bytes, end: bytes | None = None, **options: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"key": _b64(key), **options}
    if end is not None:
        request["range_end"] = _b64(end)
    return {"request_range": request}


#: One change of a write: ``(key, value)`` to put, ``(key, None)`` to delete.
_Change = tuple[str, bytes | None]


def _request_op(key: str, value: bytes | None) -> dict[str, Any]:
    """The txn operation of one change: a put, or a delete when ``value`` is None."""
    if value is None:
        return {"request_delete_range": {"key": _b64(key.encode())}}
    return {"request_put": {"key": _b64(key.encode()), "value": _b64(value)}}


def _unchanged_since(revision: int, key: bytes, end: bytes | None = None) -> dict[str, Any]:
    """Compare: every key in ``[key, end)`` (or ``key`` alone) has mod_revision <= revision."""
    compare: dict[str, Any] = {
        "key": _b64(key),
        "target": "MOD",
        "result": "LESS",
        "mod_revision": str(revision + 1),
    }
    if end is not None:
        compare["range_end"] = _b64(end)
    return compare


class _KV(msgspec.Struct, gc=False):
    """One ``mvccpb.KeyValue`` of a range answer, as much of it as reads need."""

    key: bytes  # base64 in the gateway's JSON: msgspec decodes it in C
    value: bytes = b""  # left out when empty, or by keys_only
    mod_revision: int = 0  # an int64, which the gateway sends as a JSON string


class _Range(msgspec.Struct, gc=False):
    """A ``RangeResponse``: its key-values and whether a next page exists."""

    kvs: list[_KV] = []
    more: bool = False


class _Header(msgspec.Struct, frozen=True, gc=False):
    revision: int = 0


class _RangeAnswer(_Range, gc=False):
    """The body of ``/v3/kv/range``."""

    header: _Header = _Header()


class _ResponseOp(msgspec.Struct, gc=False):
    response_range: _Range = msgspec.field(default_factory=_Range)


class _ReadTxnAnswer(msgspec.Struct, gc=False):
    """The body of ``/v3/kv/txn`` whose operations are all ranges."""

    header: _Header = _Header()
    responses: list[_ResponseOp] = []


#: Typed parsers of read answers: the fields reads ignore are skipped in C, and
#: ``strict=False`` accepts the gateway's int64-as-string numbers.
_READ_TXN = msgspec.json.Decoder(_ReadTxnAnswer, strict=False)
_RANGE = msgspec.json.Decoder(_RangeAnswer, strict=False)


def _key_values(response_range: _Range) -> list[KeyValue]:
    new = tuple.__new__  # KeyValue(...) without its Python-level __new__: the read hot path
    return [
        new(KeyValue, (kv.key.decode("utf-8", "surrogateescape"), kv.value, kv.mod_revision))
        for kv in response_range.kvs
    ]


class _Endpoint:
    """One cluster member: its etcd3gw client (session, URLs) and auth token."""

    def __init__(self, url: str, settings: EtcdSettings) -> None:
        parts = urlsplit(url)
        session = requests.Session()
        session.trust_env = settings.use_proxies
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=settings.per_host_pool_size, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if settings.ca_cert:
            session.verify = settings.ca_cert
        if settings.cert:
            session.cert = (
                (settings.cert, settings.cert_key) if settings.cert_key else settings.cert
            )
        self.url = url
        self.client = Etcd3Client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or settings.port,
            protocol=parts.scheme,
            timeout=settings.read_timeout,
            api_path="/v3/",
            session=session,
        )
        self.token: str | None = None


class V3Backend:
    """Backend over the etcd v3 API.  Thread-safe; fails over between endpoints.

    :param settings: connection settings; ``urls`` gives the endpoints, tried in
        order starting from the last one that answered.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        for name in ("srv_domain", "expected_cluster_id"):
            if getattr(settings, name):
                raise EtcdSettingsError(
                    f"{name} is only used by the v2 API (api = v2); "
                    "with v3 give the cluster's endpoints"
                )
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        self._members = [_Endpoint(url, settings) for url in self.endpoints]
        self._current = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"V3Backend(endpoints={self.endpoints!r})"

    # -- transport ---------------------------------------------------------

    def _post(
        self,
        path: str,
        payload: dict[str, Any],
        key: str | None = None,
        decoder: msgspec.json.Decoder[Any] | None = None,
    ) -> Any:
        """POST ``payload`` to ``/v3/<path>``, failing over between endpoints.

        Starts at the endpoint that answered last and tries each endpoint once,
        waiting ``read_timeout`` seconds for each: a member that hangs costs one
        ``read_timeout`` and the request goes on to the next member, which later
        requests then start from.  So a request fails after at most
        ``len(endpoints) * read_timeout`` seconds.

        :param decoder: parses the answer into its type; plain JSON values without.
        :raises EtcdConnectionFailed: (or :class:`EtcdTimeout` when one timed out)
            naming every endpoint tried, when none answered.
        """
        body = json.dumps(payload)
        timeout = self.settings.read_timeout
        tried: list[str] = []
        timed_out = False
        last: Exception | None = None
        start = self._current
        count = len(self._members)
        for step in range(count):
            index = (start + step) % count
            member = self._members[index]
            tried.append(member.url)
            try:
                result = self._post_to(member, path, body, timeout, key, decoder)
            except (requests.Timeout, _Unavailable) as exc:
                timed_out = timed_out or isinstance(exc, requests.Timeout)
                last = exc
                continue
            except requests.RequestException as exc:  # refused, reset, TLS, broken stream
                last = exc
                continue
            self._current = index
            return result
        error = EtcdTimeout if timed_out else EtcdConnectionFailed
        raise error(
            f"no etcd endpoint answered (tried {len(tried)} of {count}, "
            f"{timeout} s each): {last}",
            endpoints=tried,
            key=key,
        ) from last

    def _post_to(
        self,
        member: _Endpoint,
        path: str,
        body: str,
        timeout: float,
        key: str | None,
        decoder: msgspec.json.Decoder[Any] | None,
    ) -> Any:
        url = member.client.get_url(path)
        if self.settings.username and member.token is None:
            self._authenticate(member, timeout)
        response = member.client.session.post(url, data=body, timeout=timeout)
        if response.status_code == 401 and self.settings.username:
            self._authenticate(member, timeout)  # the token expired: once more with a new one
            response = member.client.session.post(url, data=body, timeout=timeout)
        if response.status_code != 200:
            raise self._translate(member, response, key)
        try:
            return response.json() if decoder is None else decoder.decode(response.content)
        except (ValueError, msgspec.DecodeError) as exc:
            raise EtcdError(
                f"{url} did not answer with etcd v3 JSON: {response.text[:200]!r}",
                endpoints=(member.url,),
                key=key,
            ) from exc

    def _authenticate(self, member: _Endpoint, timeout: float) -> None:
        response = member.client.session.post(
            member.client.get_url("/auth/authenticate"),
            data=json.dumps(
                {"name": self.settings.username, "password": self.settings.password or ""}
            ),
            timeout=timeout,
        )
        if response.status_code != 200:
            raise self._translate(member, response, None)
        member.token = response.json()["token"]
        member.client.session.headers["Authorization"] = member.token

    def _translate(self, member: _Endpoint, response: requests.Response, key: str | None) -> Any:
        """Map an error response to an exception (returned, for the caller to raise)."""
        try:
            detail = response.json()
        except ValueError:
            detail = {}
        message = str(detail.get("message") or detail.get("error") or response.text).strip()
        code = detail.get("code")
        where: dict[str, Any] = {"endpoints": (member.url,), "key": key}
        if response.status_code in (502, 503):
            return _Unavailable(message)
        if code == _PERMISSION_DENIED or response.status_code == 403:
            return EtcdPermissionDenied(f"permission denied: {message}", **where)
        if code == _UNAUTHENTICATED or response.status_code == 401 or "authentication" in message:
            return EtcdAuthError(f"authentication failed: {message}", **where)
        if "user name is empty" in message or "token" in message:
            return EtcdAuthError(f"authentication required: {message}", **where)
        if "request is too large" in message or "too many operations" in message:
            return EtcdInvalidTree(f"etcd rejected the request: {message}", **where)
        return EtcdError(f"etcd error {response.status_code}: {message}", **where)

    def _txn(
        self,
        compare: Sequence[dict[str, Any]],
        success: Sequence[dict[str, Any]],
        key: str | None = None,
        decoder: msgspec.json.Decoder[Any] | None = None,
    ) -> Any:
        payload = {"compare": list(compare), "success": list(success)}
        return self._post("/kv/txn", payload, key, decoder)

    # -- reads -------------------------------------------------------------

    def read(self, key: str, *, keys_only: bool = False) -> Snapshot:
        """The leaf at ``key`` and every key below it, at one revision.

        One ``txn`` of two ``range`` requests (more ``range`` requests pinned to the
        same revision only past :data:`PAGE_SIZE` keys).

        :returns: a :class:`Snapshot`; ``items`` sorted by key, empty when nothing
            is stored.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        options: dict[str, Any] = {"keys_only": True} if keys_only else {}
        return self._read_subtree(key, [key] if key else [], options)

    def read_tree(self, key: str) -> tuple[Any, int]:
        """``(value, revision)`` from one :meth:`read`; :data:`ABSENT` when nothing is stored."""
        with codec.gc_paused():
            snapshot = self.read(key)
            if not snapshot.items:
                return ABSENT, snapshot.revision
            return codec.decode(snapshot.items, key), snapshot.revision

    def _read_subtree(self, key: str, singles: Sequence[str], options: dict[str, Any]) -> Snapshot:
        """One txn: a range per key of ``singles``, then the prefix ``key + '/'``,
        paged at the txn's revision when it holds more than :data:`PAGE_SIZE` keys."""
        prefix, end = _below(key)
        ops = [_range_op(single.encode(), **options) for single in singles]
        ops.append(_range_op(prefix, end, limit=PAGE_SIZE, **options))
        response = self._txn([], ops, key, _READ_TXN)
        revision = response.header.revision
        ranges = [op.response_range for op in response.responses]
        items = [kv for r in ranges for kv in _key_values(r)]
        more = ranges[-1].more
        while more:
            start = items[-1].key.encode("utf-8", "surrogateescape") + b"\x00"
            page = self._post(
                "/kv/range",
                {
                    "key": _b64(start),
                    "range_end": _b64(end),
                    "limit": PAGE_SIZE,
                    "revision": revision,
                    **options,
                },
                key,
                _RANGE,
            )
            items.extend(_key_values(page))
            more = page.more
        return Snapshot(revision, items)

    def exists(self, key: str) -> bool:
        """One ``txn`` of two ``count_only`` ranges."""
        ops = [_range_op(*_below(key), count_only=True)]
        if key:
            ops.append(_range_op(key.encode(), count_only=True))
        response = self._txn([], ops, key)
        return any(int(r["response_range"].get("count", 0)) for r in response.get("responses", ()))

    def children(self, key: str) -> list[str]:
        """Direct child names of ``key``, from one ``keys_only`` read of the subtree."""
        base = key + SEP
        names = {
            kv.key[len(base) :].split(SEP, 1)[0]
            for kv in self.read(key, keys_only=True).items
            if kv.key.startswith(base)
        }
        return sorted(names)

    # -- writes ------------------------------------------------------------

    def replace(self, key: str, node: Node, ancestors: Sequence[str]) -> None:
        """Make ``key`` hold exactly ``node``; delete any leaf at ``ancestors``.

        :raises EtcdInvalidTree: a single key/value exceeds ``max_request_bytes``
            (before anything is sent).
        :raises EtcdCompareFailed: other writers kept changing the subtree for
            :data:`WRITE_ATTEMPTS` attempts.
        :raises EtcdPartialWrite: a write of several txns failed after some were
            applied (the cause is chained).
        """
        leaves = dict(iter_flatten(node, key))
        check_leaf_sizes(leaves.items(), self.settings.max_request_bytes)
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
            if self._replace_once(key, leaves, ancestors):
                return
        raise EtcdCompareFailed(
            f"other writers kept changing {key!r}; gave up after {WRITE_ATTEMPTS} attempts "
            "(a write of several txns may have been partly applied)",
            endpoints=self.endpoints,
            key=key,
        )

    def _txn_budget(self) -> int:
        return self.settings.max_request_bytes - REQUEST_OVERHEAD_BYTES

    def _read_for_write(self, key: str, ancestors: Sequence[str]) -> Snapshot:
        """The subtree (with values) and any leaves at ``ancestors``, in one txn."""
        return self._read_subtree(key, [k for k in (*ancestors, key) if k], {})

    def _replace_once(self, key: str, leaves: dict[str, bytes], ancestors: Sequence[str]) -> bool:
        snapshot = self._read_for_write(key, ancestors)
        current = {kv.key: kv.value for kv in snapshot.items}
        # (key, new value or None to delete); the JSON ops are made per txn, when sent
        changes: list[_Change] = [
            (leaf_key, value)
            for leaf_key, value in leaves.items()
            if current.get(leaf_key) != value
        ]
        changes += [(old_key, None) for old_key in current if old_key not in leaves]
        del current
        if not changes:
            return True
        changes.sort(key=lambda change: change[0])
        batches = self._batches(changes)
        revision = snapshot.revision
        if len(batches) == 1:
            singles = [k for k in (*ancestors, key) if k]
            compares = [_unchanged_since(revision, k.encode()) for k in singles]
            compares.append(_unchanged_since(revision, *_below(key)))
            response = self._txn(compares, [_request_op(*change) for change in changes], key)
            return bool(response.get("succeeded"))
        written = self._apply_batches(key, batches, revision)
        return written is not None and self._verify(key, leaves, revision, written)

    def _verify(self, key: str, leaves: dict[str, bytes], revision: int, written: set[int]) -> bool:
        """After a write of several txns: one ``keys_only`` read shows exactly our keys,
        each last changed by one of our txns or left as it was at ``revision``
        (where it already held our value).  Anything else means another writer got
        in between: the write starts again, so the last writer to verify leaves its
        whole tree, never a mix of two."""
        snapshot = self.read(key, keys_only=True)
        if len(snapshot.items) != len(leaves):
            return False
        return all(
            kv.key in leaves and (kv.mod_revision <= revision or kv.mod_revision in written)
            for kv in snapshot.items
        )

    def _batches(self, changes: list[_Change]) -> list[list[_Change]]:
        """Consecutive changes in txns of at most ``max_txn_ops`` ops and
        ``max_request_bytes`` bytes."""
        budget = self._txn_budget()
        limit = self.settings.max_txn_ops
        batches: list[list[_Change]] = [[]]
        size = 0
        for change in changes:
            cost = len(change[0].encode()) + len(change[1] or b"") + OP_OVERHEAD_BYTES
            if batches[-1] and (len(batches[-1]) >= limit or size + cost > budget):
                batches.append([])
                size = 0
            batches[-1].append(change)
            size += cost
        return batches

    def _apply_batches(
        self, key: str, batches: list[list[_Change]], revision: int
    ) -> set[int] | None:
        """Send the txns, up to :data:`TXNS_IN_FLIGHT` at once; each compares only the
        keys it covers, so they are independent of each other.

        Keys inside the subtree are compared as one range from the batch's first to
        its last key; keys outside it (the subtree's own key, ancestors) one by one.

        :returns: the revisions of the txns, or None when a compare failed (the
            caller starts again).
        """
        inside = key + SEP

        def send(batch: list[_Change]) -> int | None:
            compares = [
                _unchanged_since(revision, k.encode()) for k, _ in batch if not k.startswith(inside)
            ]
            span = [k for k, _ in batch if k.startswith(inside)]
            if span:
                compares.append(
                    _unchanged_since(revision, span[0].encode(), span[-1].encode() + b"\x00")
                )
            response = self._txn(compares, [_request_op(*change) for change in batch], key)
            return int(response["header"]["revision"]) if response.get("succeeded") else None

        futures = [self._executor().submit(send, batch) for batch in batches]
        written: set[int] = set()
        applied, conflict, error = 0, False, None
        for future in futures:
            try:
                txn_revision = future.result()
            except EtcdError as exc:
                error = error or exc
                continue
            if txn_revision is None:
                conflict = True
            else:
                applied += 1
                written.add(txn_revision)
        if error is not None:
            if applied == 0:
                raise error
            raise EtcdPartialWrite(
                f"write of {key!r} stopped after {applied} of {len(batches)} txns; "
                f"the subtree holds a mix of old and new keys: {error}",
                applied=applied,
                total=len(batches),
                endpoints=error.endpoints or self.endpoints,
                key=key,
            ) from error
        return None if conflict else written

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(TXNS_IN_FLIGHT, thread_name_prefix="link.etcd.v3")
            return self._pool

    def delete(self, key: str) -> int:
        """Delete ``key`` and everything below it in one ``txn`` of two ``delete_range``."""
        prefix, end = _below(key)
        ops = [{"request_delete_range": {"key": _b64(prefix), "range_end": _b64(end)}}]
        if key:
            ops.append(_request_op(key, None))
        response = self._txn([], ops, key)
        return sum(
            int(r["response_delete_range"].get("deleted", 0)) for r in response.get("responses", ())
        )

    # -- watch -------------------------------------------------------------

    def watch(self, key: str, start_revision: int | None = None) -> V3Watch:
        """Watch ``key`` and every key below it (``/v3/watch`` stream, one per call)."""
        return V3Watch(self, key, start_revision)

    def close(self) -> None:
        """Close every endpoint's HTTP session and the txn sender threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for member in self._members:
            member.client.session.close()


class _Unavailable(Exception):
    """A member answered 502/503 (no leader, stopping): try the next one."""


def _socket(response: requests.Response) -> socket.socket | None:
    """The socket a streamed ``response`` is read from, while it is open."""
    connection = getattr(response.raw, "connection", None) or getattr(
        response.raw, "_connection", None
    )
    return getattr(connection, "sock", None)


def _shutdown(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response``'s stream: shut its socket down.

    ``response.close()`` from another thread would block on the reader's lock.
    """
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class V3Watch:
    """A watch stream on ``key`` and its subtree: iterate for :class:`Event` s.

    Reconnects after a dropped stream, resuming from the next revision, so no
    event is lost while the compaction has not passed it.  A stream silent for
    :data:`WATCH_IDLE_SECONDS` is opened again, which proves its member still
    answers: a member that hangs (stopped, cut off) would otherwise stall the
    watch for good.  A member that does not answer the opening within
    ``read_timeout`` is left for the next endpoint.
    """

    def __init__(self, backend: V3Backend, key: str, start_revision: int | None) -> None:
        self._backend = backend
        self._key = key
        self._next_revision = start_revision
        self._response: requests.Response | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop the watch; a blocked iteration ends."""
        self._cancelled.set()
        response = self._response
        if response is not None:
            _shutdown(response)

    def __iter__(self) -> Iterator[Event]:
        while not self._cancelled.is_set():
            try:
                yield from self._stream()
            except (requests.RequestException, _Unavailable, ValueError, AttributeError):
                pass  # a dropped or refused stream: reconnect below
            if not self._cancelled.wait(0.1):
                continue

    def _stream(self) -> Iterator[Event]:
        backend = self._backend
        member = backend._members[backend._current]
        watch_key = self._key.encode() if self._key else SEP.encode()
        create: dict[str, Any] = {
            "key": _b64(watch_key),
            "range_end": _b64(range_end(watch_key)),
        }
        if self._next_revision is not None:
            create["start_revision"] = self._next_revision
        if backend.settings.username and member.token is None:
            backend._authenticate(member, backend.settings.read_timeout)
        try:
            response = member.client.session.post(
                member.client.get_url("/watch"),
                data=json.dumps({"create_request": create}),
                stream=True,
                timeout=backend.settings.read_timeout,  # to connect and to get the headers
            )
        except requests.RequestException:  # refused, or hung: the next member
            backend._current = (backend._current + 1) % len(backend._members)
            raise
        sock = _socket(response)
        if sock is not None:
            sock.settimeout(WATCH_IDLE_SECONDS)  # then a silent stream is opened again
        self._response = response
        if self._cancelled.is_set():
            response.close()
            return
        if response.status_code != 200:
            with response:
                raise backend._translate(member, response, self._key)
        with response:
            yield from self._events(response)

    def _events(self, response: requests.Response) -> Iterator[Event]:
        inside = self._key + SEP
        for line in response.iter_lines():
            if not line:
                continue
            result = json.loads(line).get("result", {})
            if result.get("created") and self._next_revision is None:
                # watching "from now": a reopened stream resumes after this revision
                self._next_revision = int(result.get("header", {}).get("revision", 0)) + 1
            if result.get("canceled"):
                # e.g. the start revision was compacted: resume from the oldest kept one
                compacted = int(result.get("compact_revision", 0) or 0)
                if compacted:
                    self._next_revision = compacted
                response.close()
                return
            for raw in result.get("events", ()):
                kv = raw["kv"]
                event_key = _unb64(kv["key"]).decode("utf-8", "surrogateescape")
                if self._key and event_key != self._key and not event_key.startswith(inside):
                    continue  # e.g. '/app-x' for a watch on '/app'
                revision = int(kv.get("mod_revision", 0))
                self._next_revision = revision + 1
                yield Event(
                    raw.get("type", "PUT"), event_key, _unb64(kv.get("value", "")), revision
                )
