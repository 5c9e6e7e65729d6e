"""The legacy etcd v2 backend, through python-etcd (``/v2/keys``).

v2 has real directories and in-order keys but no multi-key transactions, so a
tree write here is *not* atomic: :meth:`V2Backend.replace` deletes the old
subtree (one recursive ``DELETE``) and then writes every leaf, in parallel over
the connection pool (``per_host_pool_size`` requests in flight).  The items of a
list are appended in order (``POST``: etcd's in-order keys) by one worker, so
list order is kept.  A reader may observe the subtree missing or partly
written while a replace runs.  A subtree is read with one recursive, sorted
``GET``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3

import etcd

from ..codec import EMPTY_DICT, Node, flatten
from ..errors import (
    EtcdAuthError,
    EtcdConnectionFailed,
    EtcdError,
    EtcdPartialWrite,
    EtcdPermissionDenied,
    EtcdTimeout,
)
from ..paths import SEP
from ..settings import EtcdSettings
from .base import Event, KeyValue, Snapshot, check_leaf_sizes

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
#: Seconds a watch long-poll waits before it checks whether it was cancelled.
WATCH_POLL_SECONDS = 1.0


def _quote(key: str) -> str:
    """The URL path for ``key``: segments starting with ``_`` (hidden on v2) get ``%5F``
    instead, then ``%``, ``#``, ``?``, spaces and non-ASCII are percent-encoded."""
    if "/_" in key:
        key = key.replace("/_", "/%5F")
    return quote(key or SEP, safe="/")


def _unhide(key: str) -> str:
    """Inverse of the ``_`` → ``%5F`` step of :func:`_quote`, for keys the server returns."""
    return key.replace("/%5F", "/_") if "/%5F" in key else key


class V2Backend:
    """Backend over the etcd v2 API (python-etcd ``Client``).  Thread-safe.

    The python-etcd client is created on first use: with ``allow_reconnect`` it
    asks the cluster for its members, which is network I/O.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        self._client: etcd.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"V2Backend(endpoints={self.endpoints!r})"

    @contextmanager
    def _translate(self, key: str | None) -> Iterator[None]:
        """Turn python-etcd and urllib3 exceptions into link.etcd ones (``from exc``)."""
        where: dict[str, Any] = {"endpoints": self.endpoints, "key": key}
        try:
            yield
        except etcd.EtcdInsufficientPermissions as exc:
            if self.settings.username:
                raise EtcdPermissionDenied(f"permission denied: {exc}", **where) from exc
            raise EtcdAuthError(f"authentication required: {exc}", **where) from exc
        except etcd.EtcdConnectionFailed as exc:
            cause = getattr(exc, "cause", None)
            error = (
                EtcdTimeout
                if isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError))
                else EtcdConnectionFailed
            )
            raise error(f"no etcd endpoint answered: {exc}", **where) from exc
        except etcd.EtcdException as exc:
            raise EtcdError(f"etcd v2 error: {exc}", **where) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise EtcdConnectionFailed(f"no etcd endpoint answered: {exc!r}", **where) from exc

    @property
    def client(self) -> etcd.Client:
        """The python-etcd client, created on first use."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._make_client()
                except etcd.EtcdException as exc:  # with allow_reconnect it asks for members
                    raise EtcdConnectionFailed(
                        f"no etcd endpoint answered: {exc}", endpoints=self.endpoints
                    ) from exc
            return self._client

    def _make_client(self) -> etcd.Client:
        client = self._new_client()
        # One try per endpoint and request: python-etcd moves on to the next endpoint
        # itself, and urllib3's own retries would multiply read_timeout.
        client.http.connection_pool_kw["retries"] = urllib3.Retry(0, read=False, redirect=3)
        return client

    def _new_client(self) -> etcd.Client:
        s = self.settings
        hosts = tuple((p.hostname, p.port or s.port) for p in map(urlsplit, self.endpoints))
        cert: Any = (s.cert, s.cert_key) if s.cert and s.cert_key else s.cert
        return etcd.Client(
            host=hosts if len(hosts) > 1 else hosts[0][0],
            port=hosts[0][1],
            srv_domain=s.srv_domain,
            version_prefix=s.version_prefix,
            read_timeout=s.read_timeout,
            allow_redirect=s.allow_redirect,
            protocol=urlsplit(self.endpoints[0]).scheme,
            cert=cert,
            ca_cert=s.ca_cert,
            username=s.username,
            password=s.password,
            allow_reconnect=s.allow_reconnect and len(hosts) > 1,
            use_proxies=s.use_proxies,
            expected_cluster_id=s.expected_cluster_id,
            per_host_pool_size=s.per_host_pool_size,
        )

    def _get(self, key: str, **params: str) -> tuple[int, dict[str, Any] | None]:
        """``GET /v2/keys/<key>``: ``(X-Etcd-Index, node)``; node ``None`` when absent."""
        client = self.client
        with self._translate(key):
            try:
                response = client.api_execute(
                    client.key_endpoint + _quote(key), client._MGET, params=params
                )
            except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir) as exc:  # NotDir: below a leaf
                return int((getattr(exc, "payload", None) or {}).get("index", 0) or 0), None
            index = int(response.getheader("x-etcd-index") or 0)
            return index, json.loads(response.data.decode("utf-8"))["node"]

    # -- reads -------------------------------------------------------------

    def read(self, key: str, *, keys_only: bool = False) -> Snapshot:
        """One recursive, sorted ``GET``; an empty directory reads as a ``{}`` leaf."""
        index, node = self._get(key, recursive="true", sorted="true")
        items: list[KeyValue] = []
        stack = [node] if node is not None else []
        while stack:
            current = stack.pop()
            if current.get("dir"):
                children = current.get("nodes") or []
                if not children and current.get("key"):  # the root directory has no key
                    items.append(
                        KeyValue(_unhide(current["key"]), EMPTY_DICT, current["modifiedIndex"])
                    )
                stack.extend(reversed(children))
            else:
                value = b"" if keys_only else current.get("value", "").encode("utf-8")
                items.append(KeyValue(_unhide(current["key"]), value, current["modifiedIndex"]))
        return Snapshot(index, items)

    def exists(self, key: str) -> bool:
        """One ``GET`` of the key (not recursive)."""
        return self._get(key)[1] is not None

    def children(self, key: str) -> list[str]:
        """One ``GET`` of the directory (not recursive)."""
        node = self._get(key, sorted="true")[1]
        if node is None or not node.get("dir"):
            return []
        return [_unhide(child["key"]).rsplit(SEP, 1)[-1] for child in node.get("nodes") or ()]

    # -- writes ------------------------------------------------------------

    def replace(self, key: str, node: Node, ancestors: Sequence[str]) -> None:
        """Write ``node`` at ``key`` in place of whatever is there (not atomic, see the
        module docstring).

        A leaf over a leaf is one ``PUT`` (readers see the old or the new value).
        Otherwise: one recursive ``DELETE``, then one ``PUT`` per dict leaf and one
        ``POST`` per list item.  Only when an ancestor is a leaf: one ``DELETE`` per
        ancestor, then the write again.

        :raises EtcdPartialWrite: when some leaves were written and others failed.
        """
        check_leaf_sizes(flatten(node, key), self.settings.max_request_bytes)
        jobs = list(_plan(key, node))
        first, rest = jobs[0], jobs[1:]
        if not isinstance(node, bytes):
            self._delete_tree(key)
        try:
            with self._translate(key):
                first(self.client)
        except EtcdError as exc:
            if isinstance(exc.__cause__, etcd.EtcdNotDir):  # an ancestor is a leaf
                self._delete_leaf_ancestors(ancestors)
            elif isinstance(exc.__cause__, etcd.EtcdNotFile):  # a leaf over a directory
                self._delete_tree(key)
            else:
                raise
            with self._translate(key):
                first(self.client)
        self._run(key, rest, len(jobs))

    def _run(self, key: str, jobs: list[Callable[[etcd.Client], None]], total: int) -> None:
        if not jobs:
            return
        client = self.client
        pool = self._executor()
        futures: list[Future[None]] = [pool.submit(job, client) for job in jobs]
        failures = [f.exception() for f in futures if f.exception() is not None]
        if failures:
            applied = total - len(failures)
            try:
                with self._translate(key):
                    raise failures[0]  # type: ignore[misc]
            except EtcdError as exc:
                raise EtcdPartialWrite(
                    f"write of {key!r} stopped: {len(failures)} of {total} writes failed, "
                    f"the subtree is incomplete: {exc}",
                    applied=applied,
                    total=total,
                    endpoints=self.endpoints,
                    key=key,
                ) from exc

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.settings.per_host_pool_size, thread_name_prefix="link.etcd.v2"
                )
            return self._pool

    def _delete_tree(self, key: str) -> bool:
        client = self.client
        with self._translate(key):
            try:
                client.delete(_quote(key), recursive=True)
            except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir):  # NotDir: an ancestor is a leaf
                return False
        return True

    def _delete_leaf_ancestors(self, ancestors: Sequence[str]) -> None:
        client = self.client
        for ancestor in ancestors:
            with self._translate(ancestor):
                try:
                    client.delete(_quote(ancestor))
                except (etcd.EtcdKeyNotFound, etcd.EtcdNotFile):
                    continue

    def delete(self, key: str) -> int:
        """One recursive ``DELETE``, then ``DELETE dir=true`` of parents left empty."""
        if not self._delete_tree(key):
            return 0
        client = self.client
        parent = key.rsplit(SEP, 1)[0]
        while parent:
            with self._translate(parent):
                try:
                    client.delete(_quote(parent), dir=True)
                except (etcd.EtcdDirNotEmpty, etcd.EtcdKeyNotFound, etcd.EtcdNotFile):
                    break
                except etcd.EtcdException as exc:  # v2 reports "directory not empty" as 108
                    if "not empty" in str(exc).lower():
                        break
                    raise
            parent = parent.rsplit(SEP, 1)[0]
        return 1

    # -- watch -------------------------------------------------------------

    def watch(self, key: str, start_revision: int | None = None) -> V2Watch:
        """Long-polling ``GET ?wait=true&recursive=true`` on ``key``."""
        return V2Watch(self, key, start_revision)

    def close(self) -> None:
        """Stop the writer pool and close pooled connections."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._client is not None:
                self._client.http.clear()
                self._client = None


def _plan(key: str, node: Node) -> Iterator[Callable[[etcd.Client], None]]:
    """Independent write jobs for ``node`` at ``key``: one per dict leaf, one per list."""
    if isinstance(node, bytes):
        yield _put_job(key, node)
    elif isinstance(node, dict):
        for name, child in node.items():
            yield from _plan(f"{key}{SEP}{name}", child)
    else:
        yield _append_job(key, node)


def _put_job(key: str, value: bytes) -> Callable[[etcd.Client], None]:
    def job(client: etcd.Client) -> None:
        client.write(_quote(key), value.decode("utf-8"))

    return job


def _append_job(key: str, items: list[Node]) -> Callable[[etcd.Client], None]:
    """Append ``items`` in order under ``key``; containers become in-order directories."""

    def job(client: etcd.Client) -> None:
        for item in items:
            if isinstance(item, bytes):
                client.write(_quote(key), item.decode("utf-8"), append=True)
                continue
            created = _unhide(client.write(_quote(key), None, dir=True, append=True).key)
            for sub in _plan(created, item):
                sub(client)

    return job


class V2Watch:
    """A v2 watch on ``key`` and its subtree (long poll, resumed by ``waitIndex``)."""

    def __init__(self, backend: V2Backend, key: str, start_revision: int | None) -> None:
        self._backend = backend
        self._key = key
        self._index = start_revision
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop the watch within :data:`WATCH_POLL_SECONDS`."""
        self._cancelled.set()

    def __iter__(self) -> Iterator[Event]:
        client = self._backend.client
        while not self._cancelled.is_set():
            try:
                result = client.watch(
                    _quote(self._key),
                    index=self._index,
                    recursive=True,
                    timeout=WATCH_POLL_SECONDS,
                )
            except (etcd.EtcdWatchTimedOut, etcd.EtcdConnectionFailed):
                continue
            except etcd.EtcdEventIndexCleared:
                self._index = None  # history is gone: resume from now
                continue
            if result is None or self._cancelled.is_set():
                continue
            self._index = result.modifiedIndex + 1
            kind = "PUT" if result.action in _PUT_ACTIONS else "DELETE"
            value = (result.value or "").encode("utf-8") if kind == "PUT" else b""
            yield Event(kind, _unhide(result.key), value, result.modifiedIndex)
