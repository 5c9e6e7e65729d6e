"""The legacy etcd v2 backend, through python-etcd (``/v2/keys``).

v2 has real directories and in-order keys but no multi-key transactions, so a
tree write here is *not* atomic: :meth:`V2Backend.replace` deletes the old
subtree (one recursive ``DELETE``) and then writes every leaf (``PUT``) and
appends every list item (``POST``: etcd's in-order keys), pipelined over
``per_host_pool_size`` kept-alive connections by :mod:`.v2_pipeline`; the items
of one list travel in order on one connection, so list order is kept.  A reader
may observe the subtree missing or partly written while a replace runs.  A
subtree is read with one recursive ``GET`` (through python-etcd's connection
handling), its answer parsed by msgspec into the few fields a read needs and
decoded in one pass; directories are put in key order here.  Deletes and
watches use python-etcd.

The primitives that one v2 request can guard (a single key's ``prevExist``,
``prevValue`` or ``prevIndex``) are here too: :meth:`V2Backend.create`,
:meth:`V2Backend.compare_and_swap` and :meth:`V2Backend.transform_leaf` on a
leaf, :meth:`V2Backend.append` with etcd's in-order keys, and node TTLs.  What
would need a multi-key transaction (a swap of a tree, rewriting a tree from
its read) is left to v3: the callers raise :class:`EtcdUnsupported`.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.client import HTTPException
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
import urllib3

import etcd

from .. import codec
from ..codec import Node, iter_flatten
from ..errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdPartialWrite,
    EtcdPermissionDenied,
    EtcdTimeout,
    EtcdUnsupported,
)
from ..paths import SEP
from ..settings import EtcdSettings
from .base import ABSENT, WATCH_IDLE_SECONDS, Event, check_leaf_sizes
from .v2_pipeline import Pipeline, PipelineError, Request

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
#: Seconds a watch long-poll waits before it checks whether it was cancelled.
WATCH_POLL_SECONDS = 1.0
#: Attempts of a conditional write that concurrent writers keep beating (as on v3).
CONDITIONAL_ATTEMPTS = 64
#: Segment of a list item before its in-order key is known (for size checks).
_ANY_POSITION = codec.position(0)


def _seconds(ttl: float | None) -> int | None:
    """etcd v2's TTL for ``ttl`` seconds: whole seconds, rounded up (``None``: none)."""
    return None if ttl is None else max(1, math.ceil(ttl))


def _backoff(attempt: int) -> None:
    """Jittered pause before attempt ``attempt`` (1, 2, …) of a contended write
    (the same curve as v3's guarded writes: up to 50 ms)."""
    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


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
        #: seconds a watch stream opened from now on may stay silent before its member
        #: is checked (:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` by default)
        self.watch_idle_seconds = WATCH_IDLE_SECONDS
        self._client: etcd.Client | None = None
        self._writer: Pipeline | None = None
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
        except PipelineError as exc:
            raise EtcdConnectionFailed(f"no etcd endpoint answered: {exc}", **where) from exc
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
        """A python-etcd client whose requests go through :class:`_FailoverClient`'s
        walk over the configured endpoints (no I/O here).

        python-etcd's own failover is not used: it keeps a list of members that
        each failure uses up and that is never refilled (after a full outage every
        call failed with "No more machines in the cluster"), and it compares the
        members' advertised URLs with the configured ones (``localhost`` against
        ``127.0.0.1`` raised ``ValueError``).  Like the v3 transports, the client
        talks to the configured endpoints only; urllib3's retries are off, so each
        endpoint is tried once per request.  With ``srv_domain``, python-etcd
        resolves the endpoints and fails over itself.
        """
        s = self.settings
        hosts = [(p.hostname or "", p.port or s.port) for p in map(urlsplit, self.endpoints)]
        if s.srv_domain:  # python-etcd resolves the endpoints itself
            client = self._new_client(hosts, reconnect=s.allow_reconnect)
        else:
            client = self._new_client(hosts[:1], reconnect=False)
            if isinstance(client, _FailoverClient):
                client.endpoints = self.endpoints
        client.http.connection_pool_kw["retries"] = urllib3.Retry(0, read=False, redirect=3)
        return client

    def _new_client(self, hosts: Sequence[tuple[str, int]], *, reconnect: bool) -> etcd.Client:
        s = self.settings
        cert: Any = (s.cert, s.cert_key) if s.cert and s.cert_key else s.cert
        kind = etcd.Client if s.srv_domain else _FailoverClient
        return kind(
            host=tuple(hosts) if len(hosts) > 1 else hosts[0][0],
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
            allow_reconnect=reconnect,
            use_proxies=s.use_proxies,
            expected_cluster_id=s.expected_cluster_id,
            per_host_pool_size=s.per_host_pool_size,
        )

    def _get(self, key: str, **params: str) -> tuple[int, dict[str, Any] | None]:
        """``GET /v2/keys/<key>``: ``(X-Etcd-Index, node)``; node ``None`` when absent."""
        index, data = self._get_answer(key, params)
        return index, None if data is None else json.loads(data)["node"]

    def _get_answer(self, key: str, params: dict[str, str]) -> tuple[int, bytes | None]:
        """``GET /v2/keys/<key>``: ``(X-Etcd-Index, answer bytes)``; ``None`` when absent.

        With ``quorum=true`` (linearizable: the read goes through raft, so it sees
        every write acknowledged before it, and a member cut off from the majority
        cannot answer) unless the ``serializable_reads`` setting is on.
        """
        client = self.client
        if not self.settings.serializable_reads:
            params = {**params, "quorum": "true"}
        with self._translate(key):
            try:
                response = client.api_execute(
                    client.key_endpoint + _quote(key), client._MGET, params=params
                )
            except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir) as exc:  # NotDir: below a leaf
                return int((getattr(exc, "payload", None) or {}).get("index", 0) or 0), None
            return int(response.getheader("x-etcd-index") or 0), response.data

    def _applied(self, key: str, text: str) -> bool:
        """After a conditional write that etcd refused: True when an earlier attempt
        of it may have reached etcd (see :class:`_FailoverClient`) and ``key`` now
        holds exactly ``text``, i.e. the refusal is the retry meeting the first
        attempt's own write.  (Another writer storing the same text meanwhile
        cannot be told apart; either way ``key`` holds what was asked.)"""
        client = self.client
        if not (isinstance(client, _FailoverClient) and client.uncertain()):
            return False
        node = self._get(key)[1]
        return node is not None and not node.get("dir") and node.get("value") == text

    # -- reads -------------------------------------------------------------

    def read_tree(self, key: str) -> tuple[Any, int]:
        """``(value, index)`` from one recursive ``GET``, parsed into the few fields
        a read needs and decoded in one pass (see :func:`_tree`); :data:`ABSENT`
        when nothing is stored."""
        index, data = self._get_answer(key, {"recursive": "true"})
        if data is None:
            return ABSENT, index
        with codec.gc_paused():
            try:
                node = _ANSWER.decode(data).node
            except msgspec.DecodeError as exc:  # not JSON, or not v2's answer
                raise EtcdError(
                    f"not an etcd v2 answer: {exc}: {data[:200]!r}",
                    endpoints=self.endpoints,
                    key=key,
                ) from exc
            value = _tree(node)
        if not key and value == {}:  # the root directory always exists
            return ABSENT, index
        return value, index

    def exists(self, key: str) -> bool:
        """One ``GET`` of the key (not recursive)."""
        return self._get(key)[1] is not None

    def children(self, key: str) -> list[str]:
        """One ``GET`` of the directory (not recursive)."""
        node = self._get(key, sorted="true")[1]
        if node is None or not node.get("dir"):
            return []
        return [_name(child["key"]) for child in node.get("nodes") or ()]

    # -- writes ------------------------------------------------------------

    def replace(
        self,
        key: str,
        node: Node,
        ancestors: Sequence[str],
        *,
        lease: int = 0,
        ttl: float | None = None,
    ) -> None:
        """Write ``node`` at ``key`` in place of whatever is there (not atomic, see the
        module docstring).

        A leaf over a leaf is one ``PUT`` (readers see the old or the new value).
        A directory or list: one recursive ``DELETE``, then one ``PUT`` per dict leaf
        and one ``POST`` per list item, up to ``per_host_pool_size`` in flight.  Only
        when an ancestor is a leaf: one ``DELETE`` per ancestor first.

        :param ttl: seconds the tree lives (v2 node TTLs, rounded up to whole
            seconds).  A leaf gets the TTL.  A tree: its directory at ``key`` is
            created first with the TTL (one more ``PUT dir=true``), so the whole
            tree expires at once when etcd removes that directory; every leaf and
            list item written below it carries the same TTL too (a safety net: if
            the write outlives the directory, what it wrote afterwards expires as
            well, though directories that etcd created implicitly for it stay).
            Ancestor directories that the write creates get no TTL and stay
            (empty) after the tree expires.

        A tree write that a member's failure broke off (a connection refused,
        broken or timed out) is written again from the start, once per other
        endpoint: that cannot apply anything twice, since each attempt starts by
        deleting the subtree (list items appended by the broken attempt go too).

        :raises EtcdPartialWrite: when some writes failed after others were applied.
        :raises EtcdUnsupported: ``lease`` given: v2 has node TTLs, not leases.
        """
        if lease:
            raise EtcdUnsupported("v2 has no leases (use ttl=, or api = v3)", key=key)
        check_leaf_sizes(iter_flatten(node, key), self.settings.max_request_bytes)
        for attempt in range(len(self.endpoints)):
            try:
                self._replace_once(key, node, ancestors, _seconds(ttl))
                return
            except EtcdPartialWrite as exc:
                if attempt + 1 == len(self.endpoints) or not isinstance(
                    exc.__cause__, EtcdConnectionFailed
                ):
                    raise

    def _replace_once(
        self, key: str, node: Node, ancestors: Sequence[str], seconds: int | None
    ) -> None:
        """One attempt of :meth:`replace`."""
        client = self.client
        with self._translate(key):
            if isinstance(node, bytes):
                self._put_leaf(key, node, ancestors, seconds)
                return
            try:
                client.delete(_quote(key), recursive=True)
            except etcd.EtcdKeyNotFound:
                pass
            except etcd.EtcdNotDir:  # an ancestor is a leaf
                self._delete_leaf_ancestors(ancestors)
            if seconds is not None:  # the directory that takes the whole tree with it
                client.write(_quote(key), None, dir=True, ttl=seconds)
        self._write_tree(key, node, seconds)

    def _write_tree(self, key: str, node: Node, ttl: int | None = None) -> None:
        """Write a container ``node`` into the (empty) ``key``, pipelined; every
        request carries ``ttl`` (whole seconds) when given.

        In rounds: a round sends every known leaf (``PUT``) and every list's items
        (``POST``, a list's items in order on one connection), spread over
        ``per_host_pool_size`` connections; the in-order directories created for
        container items give the next round's work.  Rounds = nesting depth of
        lists holding containers.
        """
        total = _request_count(node)
        applied = 0
        pending: list[tuple[str, Node]] = [(key, node)]
        while pending:
            batches, followups = _round(pending, self.settings.per_host_pool_size, ttl)
            try:
                with self._translate(key):
                    answers = self._pipeline().run(batches)
            except EtcdError as exc:
                raise EtcdPartialWrite(
                    f"write of {key!r} stopped after at least {applied} of {total} requests; "
                    f"the subtree is incomplete: {exc}",
                    applied=applied,
                    total=total,
                    endpoints=self.endpoints,
                    key=key,
                ) from exc
            pending = [
                (_unhide(created), item)
                for batch_items, batch_answers in zip(followups, answers, strict=True)
                for item, created in zip(batch_items, batch_answers, strict=True)
                if item is not None and created is not None
            ]
            applied += sum(len(batch) for batch in batches)

    def _pipeline(self) -> Pipeline:
        """The pipelined writer, starting at the endpoint python-etcd last reached."""
        base = self.client.base_uri
        with self._lock:
            if self._writer is None:
                self._writer = Pipeline(self.settings)
            self._writer.prefer(base)
            return self._writer

    def _put_leaf(
        self, key: str, value: bytes, ancestors: Sequence[str], ttl: int | None = None
    ) -> None:
        client = self.client
        try:
            client.write(_quote(key), value.decode("utf-8"), ttl=ttl)
            return
        except etcd.EtcdNotDir:  # an ancestor is a leaf
            self._delete_leaf_ancestors(ancestors)
        except etcd.EtcdNotFile:  # a leaf over a directory
            self._delete_tree(key)
        client.write(_quote(key), value.decode("utf-8"), ttl=ttl)

    def _delete_tree(self, key: str) -> bool:
        """One recursive ``DELETE``: True when it deleted something, or when it was
        not found only after an attempt that may have reached etcd had failed (see
        :meth:`delete`)."""
        client = self.client
        with self._translate(key):
            try:
                client.delete(_quote(key), recursive=True)
            except (etcd.EtcdKeyNotFound, etcd.EtcdNotDir):  # NotDir: an ancestor is a leaf
                return isinstance(client, _FailoverClient) and client.uncertain()
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
        """Delete the leaf or subtree at ``key``: one recursive ``DELETE``, then
        ``DELETE dir=true`` of parents left empty.  The root (``key`` ``""``, the
        prefix ``/``) cannot be deleted on v2 ("Root is read only"): each of its
        children is deleted instead.

        With several endpoints the ``DELETE`` is preceded by one quorum ``GET`` of
        ``key``: when the ``DELETE`` reached a member that then failed (stopped,
        connection broken after the request went out) and the retry on the next
        member finds nothing, the key existed before this call and is gone now, so
        the delete is reported as done (1), not as "nothing stored".

        :returns: 1 when something was deleted (or, as above, is gone), else 0.
        :raises EtcdConnectionFailed: no endpoint answered (each is named).
        """
        if not key:
            return max((self.delete(SEP + name) for name in self.children(key)), default=0)
        if len(self.endpoints) > 1 and not self.exists(key):
            return 0
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

    # -- conditional writes: one key's prevExist, prevValue or prevIndex --------

    def create(
        self, key: str, node: Node, ancestors: Sequence[str], *, ttl: float | None = None
    ) -> bool:
        """Store ``node`` at ``key`` only if nothing is there (not even an empty directory).

        A leaf: one ``PUT prevExist=false`` (atomic).  A tree: one
        ``PUT dir=true prevExist=false`` claims ``key`` atomically, then the
        contents are written into the new directory, pipelined as in
        :meth:`replace`; readers may see the tree partly written meanwhile.  A leaf
        at an ancestor is deleted first, as a replace does (one ``DELETE`` per
        ancestor, only when etcd answers "not a directory").

        :param ttl: seconds (rounded up): the leaf's TTL, or the directory's and
            every node's below it (see :meth:`replace`).
        :returns: True when written; False when ``key`` holds something (error 105).
        :raises EtcdPartialWrite: a tree's contents stopped part way.
        """
        check_leaf_sizes(iter_flatten(node, key), self.settings.max_request_bytes)
        seconds = _seconds(ttl)
        value = node.decode("utf-8") if isinstance(node, bytes) else None
        with self._translate(key):
            try:
                self._write_below(key, ancestors, value, ttl=seconds, prevExist=False)
            except etcd.EtcdAlreadyExist:
                if value is not None:
                    return self._applied(key, value)
                if not self._claimed(key):
                    return False
        if not isinstance(node, bytes):
            self._write_tree(key, node, seconds)
        return True

    def _claimed(self, key: str) -> bool:
        """After ``PUT dir=true prevExist=false`` was refused: True when an earlier
        attempt may have reached etcd and ``key`` is an empty directory (that
        attempt's, which nothing was written into yet)."""
        client = self.client
        if not (isinstance(client, _FailoverClient) and client.uncertain()):
            return False
        node = self._get(key)[1]
        return node is not None and bool(node.get("dir")) and not node.get("nodes")

    def compare_and_swap(self, key: str, expected: bytes, new: bytes) -> bool:
        """Store the leaf ``new`` at ``key`` only if ``key`` is a leaf holding exactly
        ``expected`` (stored bytes): one ``PUT prevValue=<expected>``.

        etcd refuses an empty ``prevValue``, so an empty ``expected`` costs one
        ``GET`` and one ``PUT prevIndex=<its modifiedIndex>`` (read again if another
        writer got in between).

        :returns: True when swapped; False when ``key`` holds another value, a
            directory or nothing (errors 101, 102, 100, 104).
        """
        check_leaf_sizes([(key, new)], self.settings.max_request_bytes)
        client = self.client
        text = new.decode("utf-8")
        for attempt in range(CONDITIONAL_ATTEMPTS):
            if expected:
                condition: dict[str, Any] = {"prevValue": expected.decode("utf-8")}
            else:
                if attempt:
                    _backoff(attempt)
                current = self._get(key)[1]
                if current is None or current.get("dir") or current.get("value") != "":
                    return False
                condition = {"prevIndex": current["modifiedIndex"]}
            with self._translate(key):
                try:
                    client.write(_quote(key), text, **condition)
                    return True
                except (etcd.EtcdKeyNotFound, etcd.EtcdNotFile, etcd.EtcdNotDir):
                    return self._applied(key, text)
                except etcd.EtcdCompareFailed:
                    if self._applied(key, text):
                        return True
                    if expected:
                        return False
        raise EtcdCompareFailed(
            f"other writers kept changing {key!r}; gave up after {CONDITIONAL_ATTEMPTS} attempts",
            endpoints=self.endpoints,
            key=key,
        )

    def transform_leaf(
        self, key: str, ancestors: Sequence[str], decide: Callable[[str | None], bytes]
    ) -> bytes:
        """Read the leaf at ``key`` and store ``decide(text)`` guarded by that read.

        One ``GET`` (the value and its ``modifiedIndex``), then one
        ``PUT prevIndex=<modifiedIndex>`` (``prevExist=false`` when nothing is
        stored).  When another writer got in between (errors 101, 105, 100, 102)
        it waits a jittered pause (up to 50 ms), reads again and calls ``decide``
        again, up to :data:`CONDITIONAL_ATTEMPTS` times: no update is lost.

        :param decide: the new stored bytes from the current text (``None`` when
            nothing is stored); called once per attempt, may raise (nothing is
            written then).
        :returns: the bytes stored.
        :raises EtcdUnsupported: ``key`` is a directory (v2 cannot rewrite a tree
            guarded by one read).
        :raises EtcdCompareFailed: other writers won every attempt.
        """
        client = self.client
        for attempt in range(CONDITIONAL_ATTEMPTS):
            if attempt:
                _backoff(attempt)
            current = self._get(key)[1]
            if current is not None and current.get("dir"):
                raise EtcdUnsupported(
                    f"{key!r} holds a tree: rewriting a tree guarded by its read needs a "
                    "multi-key transaction, which v2 does not have (use api = v3)",
                    endpoints=self.endpoints,
                    key=key,
                )
            new = decide(None if current is None else current.get("value") or "")
            check_leaf_sizes([(key, new)], self.settings.max_request_bytes)
            condition: dict[str, Any] = (
                {"prevExist": False} if current is None else {"prevIndex": current["modifiedIndex"]}
            )
            with self._translate(key):
                try:
                    client.write(_quote(key), new.decode("utf-8"), **condition)
                    return new
                except (
                    etcd.EtcdCompareFailed,
                    etcd.EtcdAlreadyExist,
                    etcd.EtcdKeyNotFound,
                    etcd.EtcdNotFile,
                ):
                    if self._applied(key, new.decode("utf-8")):
                        return new  # the retry met this call's own first attempt
                    # else another writer got in between: read again
                except etcd.EtcdNotDir:  # a leaf at an ancestor: it goes, as in a replace
                    self._delete_leaf_ancestors(ancestors)
        raise EtcdCompareFailed(
            f"other writers kept changing {key!r}; gave up after {CONDITIONAL_ATTEMPTS} attempts",
            endpoints=self.endpoints,
            key=key,
        )

    def append(
        self, key: str, node: Node, ancestors: Sequence[str], *, ttl: float | None = None
    ) -> str:
        """Add ``node`` as the last item of the list at ``key``.

        One ``GET`` of ``key`` (one level: is it a list?), then one ``POST``: etcd
        gives the item an in-order key (20 digits, the list position format), so
        concurrent appenders never collide and the items sort in the order etcd
        applied the ``POST`` s.  A tree item is a ``POST dir=true`` followed by its
        contents below the new key, written as in :meth:`replace` (readers may see
        the item partly written).  An empty list's marker (the leaf ``[]``) is
        deleted first (``DELETE prevValue=[]``).  A missing ``key`` becomes a list;
        an empty directory (left by expired items, say) counts as an empty list.
        The check and the ``POST`` are two requests: a writer that replaces the
        list by a dict in between gets the item added to its dict.

        The ``GET`` lists every item, so an append costs time in proportion to the
        list's length (v2 has no ``limit``).

        :param ttl: seconds (rounded up) the item lives, with every node below it.
        :returns: the item's position segment (the in-order key's last segment).
        :raises EtcdInvalidTree: ``key`` holds a leaf other than ``[]``, or a
            directory whose names are not all positions (a dict); nothing written.
        :raises EtcdPartialWrite: a tree item's contents stopped part way.
        """
        check_leaf_sizes(
            iter_flatten(node, f"{key}{SEP}{_ANY_POSITION}"), self.settings.max_request_bytes
        )
        seconds = _seconds(ttl)
        value = node.decode("utf-8") if isinstance(node, bytes) else None
        client = self.client
        for attempt in range(CONDITIONAL_ATTEMPTS):
            if attempt:
                _backoff(attempt)
            current = self._get(key)[1]
            if current is not None and not current.get("dir"):
                if current.get("value") != codec.EMPTY_LIST.decode():
                    raise EtcdInvalidTree(
                        f"{key!r} holds a leaf, not a list", endpoints=self.endpoints, key=key
                    )
                with self._translate(key):
                    try:  # the empty list's marker; not if another writer changed it
                        client.delete(_quote(key), prevValue=codec.EMPTY_LIST.decode())
                    except etcd.EtcdKeyNotFound:
                        pass  # another appender deleted it
                    except etcd.EtcdCompareFailed:
                        continue  # changed meanwhile: read again
            elif current is not None:
                names = [_name(child["key"]) for child in current.get("nodes") or ()]
                if not all(map(codec.is_position, names)):
                    raise EtcdInvalidTree(
                        f"{key!r} holds a dict, not a list", endpoints=self.endpoints, key=key
                    )
            with self._translate(key):
                try:
                    result = client.write(
                        _quote(key), value, dir=value is None, append=True, ttl=seconds
                    )
                except etcd.EtcdNotDir:  # a leaf at key or an ancestor, written meanwhile
                    self._delete_leaf_ancestors(ancestors)
                    continue
            created = _unhide(result.key)
            if not isinstance(node, bytes):
                self._write_tree(created, node, seconds)
            return created[created.rindex(SEP) + 1 :]
        raise EtcdCompareFailed(
            f"other writers kept changing {key!r}; gave up after {CONDITIONAL_ATTEMPTS} attempts",
            endpoints=self.endpoints,
            key=key,
        )

    def _write_below(
        self, key: str, ancestors: Sequence[str], value: str | None, **options: Any
    ) -> etcd.EtcdResult:
        """``client.write`` of ``value`` (``None``: a directory) at ``key``; when etcd
        answers "not a directory" (104: a leaf at an ancestor), those leaves are
        deleted, as a replace does, and the write is sent again.

        python-etcd's exceptions are not translated (the caller does it).
        """
        client = self.client
        for _ in range(CONDITIONAL_ATTEMPTS):
            try:
                return client.write(_quote(key), value, dir=value is None, **options)
            except etcd.EtcdNotDir:
                self._delete_leaf_ancestors(ancestors)
        raise EtcdCompareFailed(
            f"other writers kept writing leaves above {key!r}; gave up after "
            f"{CONDITIONAL_ATTEMPTS} attempts",
            endpoints=self.endpoints,
            key=key,
        )

    # -- watch -------------------------------------------------------------

    def watch(self, key: str, start_revision: int | None = None) -> V2Watch:
        """Long-polling ``GET ?wait=true&recursive=true`` on ``key``."""
        return V2Watch(self, key, start_revision)

    def close(self) -> None:
        """Stop the writer pool and close pooled connections."""
        with self._lock:
            self._writer = None
            if self._client is not None:
                self._client.http.clear()
                self._client = None


#: Characters of a non-etcd answer quoted in an error message.
_QUOTED_BODY = 80


class _FailoverClient(etcd.Client):  # type: ignore[misc]
    """python-etcd's client, each request walking the configured :attr:`endpoints`.

    A request starts at the member that answered last and tries each endpoint
    once, ``read_timeout`` seconds each; it moves on when a member refuses the
    connection, breaks it, does not answer in time, answers 5xx (no leader,
    etcd's own request timeout) or does not answer like an etcd v2 client URL
    (etcd's peer port, another HTTP server, etcd without ``--enable-v2``).  When
    every endpoint failed it raises ``etcd.EtcdConnectionFailed`` naming each
    endpoint and why.  A watch's long poll that times out raises
    ``etcd.EtcdWatchTimedOut`` as python-etcd does.

    :meth:`uncertain` tells, after a request, whether an attempt that failed
    may have reached etcd (it was sent, then the connection broke or timed out,
    or etcd answered 5xx), so that the caller can report what happened rather
    than what the retry saw.  Such a ``POST`` (an append: not idempotent) is not
    sent again: the error says it may have been applied.
    """

    endpoints: tuple[str, ...] = ()
    _base_uri: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoints = (self._base_uri,)
        self._attempts = threading.local()

    def uncertain(self) -> bool:
        """Whether an attempt of this thread's last request failed after it was sent."""
        return bool(getattr(self._attempts, "uncertain", False))

    def api_execute(
        self, path: str, method: str, params: Any = None, timeout: float | None = None
    ) -> Any:
        if timeout is None:
            timeout = self.read_timeout
        if not path.startswith(SEP):
            raise ValueError("Path does not start with /")
        waiting = isinstance(params, dict) and params.get("wait") == "true"
        endpoints = self.endpoints
        first = endpoints.index(self._base_uri) if self._base_uri in endpoints else 0
        failures: list[str] = []
        cause: BaseException | None = None
        self._attempts.uncertain = False
        started = time.monotonic()
        tried = 0
        for step in range(len(endpoints)):
            base = endpoints[(first + step) % len(endpoints)]
            tried += 1
            try:
                response = self._send(base + path, method, params, timeout or None)
                _ = response.data
            except (urllib3.exceptions.HTTPError, HTTPException, OSError) as exc:
                if waiting and isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                    raise etcd.EtcdWatchTimedOut(f"Watch timed out: {exc!r}", cause=exc) from exc
                failures.append(f"{base}: {_reason(exc)}")
                cause = exc
                if _maybe_sent(exc):
                    self._attempts.uncertain = True
                    if method == self._MPOST:  # an append: sent again, it could add twice
                        failures.append("not sent again: an append (POST) may have been applied")
                        break
                continue
            problem = _not_etcd(response)
            if problem is None and response.status >= 500:  # no leader, etcd's own timeout
                problem = f"HTTP {response.status}: {_quoted(response.data)}"
                self._attempts.uncertain = True
            if problem is not None:
                failures.append(f"{base}: {problem}")
                if self._attempts.uncertain and method == self._MPOST:
                    failures.append("not sent again: an append (POST) may have been applied")
                    break
                continue
            self._check_cluster_id(response)
            self._base_uri = base
            return self._handle_server_response(response)
        raise etcd.EtcdConnectionFailed(
            f"tried {tried} of {len(endpoints)} in "
            f"{time.monotonic() - started:.1f} s (read_timeout {self.read_timeout} s each): "
            + "; ".join(failures),
            cause=cause,
        )

    def _send(self, url: str, method: str, params: Any, timeout: float | None) -> Any:
        """One HTTP request, its body not read yet (python-etcd's encoding)."""
        options: dict[str, Any] = {
            "fields": params,
            "timeout": timeout,
            "redirect": self.allow_redirect,
            "headers": self._get_headers(),
            "preload_content": False,
        }
        if method in (self._MGET, self._MDELETE):
            return self.http.request(method, url, **options)
        if method in (self._MPUT, self._MPOST):
            return self.http.request_encode_body(method, url, encode_multipart=False, **options)
        raise etcd.EtcdException(f"HTTP method {method} not supported")


def _reason(exc: BaseException) -> str:
    """Why a request failed, in a few words (urllib3 wraps the cause)."""
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}"


def _maybe_sent(exc: BaseException) -> bool:
    """Whether a failed request may have reached the server: not when the
    connection could not be made (refused, unreachable, connect timeout)."""
    reason = (
        getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    )
    not_sent = (
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ConnectTimeoutError,
        ConnectionRefusedError,
    )
    return not isinstance(reason, not_sent)


def _quoted(body: bytes) -> str:
    """The start of an answer's body, for a message."""
    text = body[:_QUOTED_BODY].decode("utf-8", "replace").strip()
    return repr(text + ("…" if len(body) > _QUOTED_BODY else ""))


def _not_etcd(response: Any) -> str | None:
    """Why ``response`` is not an etcd v2 keys answer, or None when it is one
    (etcd sends ``X-Etcd-Index`` with every keys answer, errors too)."""
    if response.getheader("x-etcd-index") is not None:
        return None
    try:
        parsed = json.loads(response.data)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and ("errorCode" in parsed or "node" in parsed):
        return None
    return (
        "this does not look like an etcd client URL (not an etcd v2 answer: etcd's peer "
        "port, another HTTP server, or etcd without --enable-v2=true): "
        f"HTTP {response.status}: {_quoted(response.data)}"
    )


class _Node(msgspec.Struct, gc=False):
    """One node of a v2 answer, as much of it as a read needs.

    A leaf always has a ``value`` (``""`` at least) and a directory never has one;
    the other fields v2 sends (``dir``, indexes, TTL) are skipped while parsing.
    """

    key: str = SEP  # v2 leaves out the root directory's key
    value: str | None = None
    nodes: list[_Node] = []


class _Answer(msgspec.Struct, gc=False):
    """The body of a successful ``GET /v2/keys/...``: only its ``node`` is read."""

    node: _Node


#: Parses an answer into :class:`_Node` s in C, skipping the fields reads ignore.
_ANSWER = msgspec.json.Decoder(_Answer)
_KEY = operator.attrgetter("key")


def _tree(node: _Node) -> Any:
    """The Python value of a parsed v2 node, by the codec's rules (an empty directory
    is ``{}``, as on v3).

    v2 sends a directory's children unsorted: they are sorted here, which costs
    less than asking the server to (``sorted=true``).  ``node`` is consumed: each
    directory's parsed children are freed as soon as they are decoded, while
    they are still in the CPU's caches (a sixth faster than freeing the whole
    parse at the end).
    """
    if node.value is not None:
        return codec.decode_text(node.value)
    cut = len(node.key.rstrip(SEP)) + 1
    nodes, node.nodes = node.nodes, []
    nodes.sort(key=_KEY)
    decode_text = codec.decode_text
    children = {}
    for child in nodes:
        value = child.value
        children[child.key[cut:]] = _tree(child) if value is None else decode_text(value)
    if "%5F" in "".join(children):  # rare; joining can only add false alarms
        hidden = {_unhide(SEP + name)[1:]: value for name, value in children.items()}
        return codec.assemble(hidden, sort=True)
    return codec.assemble(children)


def _name(key: str) -> str:
    """The last segment of a key the server returned, ``%5F`` turned back into ``_``."""
    return _unhide(key[key.rindex(SEP) :])[1:]


def _request_count(node: Node) -> int:
    """Requests a pipelined write of ``node`` sends: one per dict leaf and list item."""
    if isinstance(node, bytes):
        return 1
    if isinstance(node, dict):
        return sum(_request_count(child) for child in node.values())
    return sum(1 if isinstance(item, bytes) else 1 + _request_count(item) for item in node)


def _round(
    pending: Sequence[tuple[str, Node]], connections: int, ttl: int | None = None
) -> tuple[list[list[Request]], list[list[Node | None]]]:
    """One round of requests for ``pending`` (key, node) pairs, in batches (one per
    connection), and per request the container it creates (``None`` for a leaf);
    every request carries ``ttl`` (whole seconds, ``None``: no TTL)."""
    units: list[list[tuple[Request, Node | None]]] = []

    def collect(key: str, node: Node) -> None:
        if isinstance(node, bytes):
            units.append([(Request("PUT", _quote(key), node.decode("utf-8"), ttl), None)])
        elif isinstance(node, dict):
            for name, child in node.items():
                collect(f"{key}{SEP}{name}", child)
        else:  # a list: its appends stay together, in order
            path = _quote(key)
            units.append(
                [
                    (Request("POST", path, item.decode("utf-8"), ttl), None)
                    if isinstance(item, bytes)
                    else (Request("POST", path, None, ttl), item)
                    for item in node
                ]
            )

    for key, node in pending:
        collect(key, node)
    count = max(1, min(connections, len(units)))
    batches: list[list[Request]] = [[] for _ in range(count)]
    followups: list[list[Node | None]] = [[] for _ in range(count)]
    for unit in sorted(units, key=len, reverse=True):  # largest first, to the lightest
        index = min(range(count), key=lambda i: len(batches[i]))
        batches[index].extend(request for request, _ in unit)
        followups[index].extend(item for _, item in unit)
    return batches, followups


class V2Watch:
    """A v2 watch on ``key`` and its subtree: long polls
    (``GET ?wait=true&recursive=true&waitIndex=N``), each resuming after the last
    event, on one endpoint at a time.

    After the backend's ``watch_idle_seconds`` (read when the watch is created;
    default :data:`WATCH_IDLE_SECONDS`) without an event, one quorum ``GET`` of the
    key (``quorum=true``: it goes through raft, so a member cut off from the
    majority cannot answer it) is sent to the member polled; when it fails within
    ``read_timeout``, the polls move to the next endpoint.  A poll that fails
    (refused, reset, an error answer) moves on too, after a pause growing from
    0.1 s to 2 s, logged.  :meth:`cancel` shuts the poll's socket: the
    iteration ends at once.

    :raises EtcdCompacted: (while iterating) etcd's 1,000-event history no longer
        holds the index to resume from; ``compact_revision`` is etcd's index then.
    """

    def __init__(self, backend: V2Backend, key: str, start_revision: int | None) -> None:
        self._backend = backend
        self._key = key
        self._index = start_revision
        self._idle = backend.watch_idle_seconds
        self._cancelled = threading.Event()
        self._member = 0
        self._response: Any = None
        self._client: etcd.Client | None = None  # the backend's, when iteration starts

    def cancel(self) -> None:
        """Stop the watch; a blocked iteration ends."""
        self._cancelled.set()
        _shut(self._response)

    @property
    def _http(self) -> etcd.Client:
        """The python-etcd client of the backend when the iteration started (its
        urllib3 pool, TLS settings and auth headers), kept: a watch cancelled by
        the backend's ``close()`` must not open a new one."""
        if self._client is None:
            self._client = self._backend.client
        return self._client

    @property
    def _endpoints(self) -> Sequence[str]:
        """The endpoints polled in turn: the settings' (python-etcd's current one
        when they name none, e.g. with ``srv_domain``)."""
        return self._backend.endpoints or (self._http.base_uri,)

    @property
    def _endpoint(self) -> str:
        return self._endpoints[self._member % len(self._endpoints)]

    @property
    def _url(self) -> str:
        return f"{self._endpoint}{self._http.key_endpoint}{_quote(self._key)}"

    def _next_member(self, reason: str, failures: int) -> float:
        """Move to the next endpoint; the pause before polling it (logged)."""
        from .v3.watch import log_failure, retry_delay

        self._member = (self._member + 1) % len(self._endpoints)
        delay = retry_delay(failures)
        log_failure(self._key, failures, reason, delay)
        return delay

    def __iter__(self) -> Iterator[Event]:
        failures = 0
        quiet_since = time.monotonic()
        while not self._cancelled.is_set():
            if time.monotonic() - quiet_since >= self._idle:
                quiet_since = time.monotonic()
                reason = self._quorum_failure()
                if reason is not None:
                    failures += 1
                    self._cancelled.wait(self._next_member(reason, failures))
                    continue
            try:
                answer = self._poll()
            except _PollFailed as exc:
                failures += 1
                self._cancelled.wait(self._next_member(str(exc), failures))
                continue
            failures = 0
            if answer is None or self._cancelled.is_set():
                continue
            quiet_since = time.monotonic()
            node = answer.get("node") or {}
            index = int(node.get("modifiedIndex") or 0)
            self._index = index + 1
            kind = "PUT" if answer.get("action") in _PUT_ACTIONS else "DELETE"
            value = (node.get("value") or "").encode("utf-8") if kind == "PUT" else b""
            yield Event(kind, _unhide(node.get("key", "")), value, index)

    def _poll(self) -> dict[str, Any] | None:
        """One long poll: the answer, or None when nothing came for
        ``watch_idle_seconds`` (or the watch was cancelled).

        :raises _PollFailed: the member did not answer usefully.
        :raises EtcdCompacted: the index to resume from left etcd's history.
        """
        client = self._http
        fields = {"wait": "true", "recursive": "true"}
        if self._index:
            fields["waitIndex"] = str(self._index)
        timeout = urllib3.Timeout(connect=self._backend.settings.read_timeout, read=self._idle)
        try:
            response = client.http.request(
                "GET",
                self._url,
                fields=fields,
                headers=client._get_headers(),
                timeout=timeout,
                preload_content=False,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _PollFailed(f"{self._endpoint}: {exc!r}") from None
        self._response = response
        if self._cancelled.is_set():
            _shut(response)
        if self._index is None and response.status == 200:
            # watching "from now": the next poll resumes after the index the
            # answer's headers (sent at once) give, not from a later "now"
            index = response.headers.get("X-Etcd-Index")
            if index and index.isdigit():
                self._index = int(index) + 1
        body = None
        try:
            body = response.read()
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            return None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if self._cancelled.is_set():
                return None
            raise _PollFailed(f"{self._endpoint}: {exc!r}") from None
        finally:
            self._response = None
            if body is None:  # part read: the connection cannot be used again
                response.close()
            response.release_conn()
        return self._answer(response.status, body)

    def _answer(self, status: int, body: bytes) -> dict[str, Any] | None:
        if self._cancelled.is_set():
            return None
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise _PollFailed(f"HTTP {status} without a v2 answer: {body[:200]!r}")
        if status == 200:
            return answer
        if answer.get("errorCode") == 401:  # EcodeEventIndexCleared
            raise EtcdCompacted(
                f"cannot resume the watch at index {self._index}: etcd's event history "
                f"moved on ({answer.get('cause', '')}); its index is {answer.get('index')}",
                compact_revision=int(answer.get("index") or 0) or None,
                endpoints=self._backend.endpoints,
                key=self._key,
            )
        raise _PollFailed(f"HTTP {status}: {answer.get('message', body[:200])}")

    def _quorum_failure(self) -> str | None:
        """Why the member polled cannot answer a quorum ``GET`` of the key within
        ``read_timeout``, or None when it can."""
        client = self._http
        url = self._endpoint
        try:
            response = client.http.request(
                "GET",
                self._url,
                fields={"quorum": "true"},
                headers=client._get_headers(),
                timeout=self._backend.settings.read_timeout,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return f"{url} did not answer a quorum read: {exc!r}"
        if response.status in (200, 404):
            return None
        return f"{url} failed a quorum read: HTTP {response.status}"


class _PollFailed(Exception):
    """A long poll got no useful answer: the next endpoint is polled."""


def _shut(response: Any) -> None:
    """Shut the socket ``response`` is read from (from any thread), if any."""
    connection = getattr(response, "_connection", None) or getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
