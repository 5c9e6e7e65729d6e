"""Lock: a distributed lock with a fencing token, interoperable with ``etcdctl lock``.

The algorithm is etcd's own (Go ``concurrency.Mutex``), so that a link.etcd lock
and ``etcdctl lock`` exclude each other:

- each would-be holder grants a lease (kept alive in the background at about
  ``ttl / 3``) and creates the key ``<name>/<lease id in hex>`` attached to it,
  in one txn; the key's **create revision** is its place in the queue and, once
  it holds the lock, its **fencing token**;
- it holds the lock when no key under ``<name>/`` was created before its own;
- otherwise it watches only its predecessor, the key created last before its
  own, found with one range (sorted by create revision, last first, created at
  ``token - 1`` or before, ``limit=1``: etcd's ``waitDeletes``), from the
  revision right after that read, for its delete: no herd, and a delete between
  the read and the watch is not missed;
- releasing deletes the key and revokes the lease; a holder that crashes stops
  refreshing, and etcd deletes its key when the lease expires.

``name`` is a path of the client, like any tree path: its etcd key is
``client.key(name)`` (``'/locks/db'`` with the default prefix ``/``), which is the
NAME to give ``etcdctl lock NAME``.  See ``docs/coordination.md``.

The module also holds what :mod:`.election` shares: the queue (:class:`Queue`)
and the one-key watch (:class:`KeyWatch`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..backends.v3.engine import answer_as
from ..backends.v3.guarded import Held
from ..backends.v3.protocol import (
    CREATE,
    EQUAL,
    Compare,
    DeleteRange,
    Op,
    Put,
    Range,
    RangeResult,
    Txn,
    TxnResult,
)
from ..errors import (
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdLockLost,
    EtcdLockTimeout,
)
from ..paths import SEP, below, encode_key
from .lease import Lease
from .lease import check_ttl as lease_ttl

if TYPE_CHECKING:
    from ..backends.v3 import V3Backend
    from ..middleware import EtcdMiddleware

_log = logging.getLogger(__name__)

#: Seconds between two looks at the lease while waiting for a predecessor.
POLL_SECONDS = 0.25


class Holder(Protocol):
    """Anything tree writes accept as ``if_held=``: a :class:`Lock` or an
    :class:`~link.etcd.recipes.election.Election`."""

    @property
    def guard(self) -> Held: ...


def check_ttl(ttl: Any) -> float:
    """``ttl`` when it is a finite number of seconds > 0.

    :raises EtcdInvalidTree: anything else (``bool`` included).
    """
    return lease_ttl(ttl, "a lock ttl")


def check_timeout(timeout: Any) -> float | None:
    """``timeout`` when it is ``None`` or a number of seconds >= 0.

    :raises EtcdInvalidTree: anything else.
    """
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout >= 0:
        raise EtcdInvalidTree(f"a timeout must be None or seconds >= 0, not {timeout!r}")
    return timeout


def txn(
    backend: V3Backend,
    compares: Sequence[Compare],
    success: Sequence[Op] = (),
    failure: Sequence[Op] = (),
    key: str | None = None,
) -> TxnResult:
    """One ``KV/Txn`` over the backend's transport (failover, TLS, auth)."""
    return answer_as(TxnResult, backend.transport.call(Txn(compares, success, failure), key))


class KeyWatch:
    """A daemon thread watching the key ``key`` (one ``Watch`` stream) from
    ``start_revision`` until its first ``DELETE``, then calling ``on_delete``.

    :attr ended: set when the thread ends: the delete was seen, the watch was
        cancelled, or it failed (the caller then looks at etcd again).
    """

    def __init__(
        self,
        backend: V3Backend,
        key: str,
        start_revision: int,
        on_delete: Callable[[], None] | None = None,
    ) -> None:
        self.key = key
        self.ended = threading.Event()
        self.deleted = False
        self._on_delete = on_delete
        self._watch = backend.watch(key, start_revision)
        self._thread = threading.Thread(
            target=self._run, name=f"link.etcd.lock watch {key}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch:
                if event.key == self.key and event.type == "DELETE":
                    self.deleted = True
                    break
        except Exception as exc:  # noqa: BLE001 - the waiter reads etcd again, raises what it gets
            _log.info("watch of %r ended: %s", self.key, exc)
        finally:
            self._watch.cancel()
            self.ended.set()
        if self.deleted and self._on_delete is not None:
            self._on_delete()

    def cancel(self) -> None:
        """Stop watching (no ``on_delete`` call after this returns, unless it was
        already running)."""
        self._on_delete = None
        self._watch.cancel()


class Queue:
    """One place in the queue of the lock (or election) whose keys are under
    ``prefix + '/'``: the lease, the key ``<prefix>/<lease id hex>`` and its create
    revision (:attr:`token`).  Made by :meth:`join`; used by one thread.

    :attr lease: the :class:`~link.etcd.recipes.lease.Lease` (kept alive).
    :attr key: the etcd key (``str``).
    :attr token: the key's create revision.
    """

    def __init__(
        self, client: EtcdMiddleware, prefix: str, lease: Lease, token: int, first: bool
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease = lease
        self.key = f"{prefix}{SEP}{lease.id:x}"
        self.token = token
        self.first = first
        #: the key last watched while waiting (``None``: none yet)
        self.predecessor: str | None = None

    @classmethod
    def join(
        cls,
        client: EtcdMiddleware,
        prefix: str,
        ttl: float,
        value: bytes,
        lost: threading.Event,
    ) -> Queue:
        """Grant a lease of ``ceil(ttl)`` s kept alive in the background (its
        ``lost`` is ``lost``), and create the key with ``value`` in one txn
        (``create_revision == 0`` → put, and a range of the key created first
        under the prefix: :func:`first_created`).

        :raises EtcdConnectionFailed: no endpoint answered (the lease, if granted,
            is revoked, or expires within ``ttl``).
        """
        lease = Lease.grant(client, ttl, keepalive=True)
        lease.lost = lost  # the lock's event: set by the keepalive when the lease is lost
        key = encode_key(f"{prefix}{SEP}{lease.id:x}")
        try:
            answer = txn(
                client._v3(prefix, "locks"),
                [Compare(key, CREATE, EQUAL, 0)],
                [Put(key, value, lease.id), first_created(prefix)],
                key=prefix,
            )
            if not answer.succeeded:  # a new lease's key cannot exist
                raise EtcdError(f"{key!r} exists already", key=prefix)
        except BaseException:
            _quietly(lease.revoke)
            raise
        first = answer_as(RangeResult, answer.responses[1])
        token = answer.revision  # the put's revision: the key's create revision
        return cls(client, prefix, lease, token, first.kvs[0].create_revision == token)

    def _backend(self) -> V3Backend:
        return self.client._v3(self.prefix, "locks")

    def wait(self, deadline: float | None) -> bool:
        """Block until this key is the oldest of the queue.

        Each round is one txn: if this key still has its create revision, the
        range of its predecessor (:func:`last_created_before`); none means first.
        Otherwise a watch of the predecessor's key until its delete, and again
        (etcd's Go ``waitDeletes``; the predecessor may itself have been waiting).

        :param deadline: ``time.monotonic()`` to give up at (``None``: never).
        :returns: True when first; False at the deadline.
        :raises EtcdLockLost: the key or its lease went away while waiting.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        if self.first:
            return True
        backend = self._backend()
        key = encode_key(self.key)
        while True:
            mine = Compare(key, CREATE, EQUAL, self.token)
            before = last_created_before(self.prefix, self.token)
            answer = txn(backend, [mine], [before], key=self.prefix)
            if not answer.succeeded or self.lease.lost.is_set():
                raise EtcdLockLost(
                    f"{self.key!r} (lease {self.lease.id:x}) went away while waiting in the "
                    "queue: the lease expired or was revoked, or the key was deleted",
                    key=self.prefix,
                )
            kvs = answer_as(RangeResult, answer.responses[0]).kvs
            if not kvs:
                self.first = True
                return True
            self.predecessor = kvs[0].key
            if not self._wait_deleted(backend, kvs[0].key, answer.revision + 1, deadline):
                return False

    def _wait_deleted(
        self, backend: V3Backend, key: str, start_revision: int, deadline: float | None
    ) -> bool:
        """Watch ``key`` from ``start_revision`` until deleted (True), the deadline
        (False) or this lease is lost (True: :meth:`wait` looks again and raises)."""
        if deadline is not None and time.monotonic() >= deadline:
            return False
        watch = KeyWatch(backend, key, start_revision)
        try:
            while not watch.ended.is_set() and not self.lease.lost.is_set():
                step = POLL_SECONDS
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    step = min(step, left)
                watch.ended.wait(step)
            return True
        finally:
            watch.cancel()

    def leave(self) -> None:
        """Delete the key and revoke the lease (``KV/DeleteRange``, ``Lease/LeaseRevoke``).

        When the lease is already lost and the cluster does not answer, the error is
        dropped: etcd deletes the key when the lease expires.
        """
        try:
            try:
                self._backend().transport.call(DeleteRange(encode_key(self.key)), self.prefix)
            finally:
                self.lease.revoke()
        except EtcdConnectionFailed:
            if not self.lease.lost.is_set():
                raise

    def held(self, name: str) -> Held:
        """The guard of tree writes: this key, with this create revision."""
        return Held(encode_key(self.key), self.token, name)


def first_created(prefix: str) -> Range:
    """The range of the key created first under ``prefix + '/'`` (the holder of a
    lock, the leader of an election): sorted by create revision, ``limit=1``
    (etcd's ``WithFirstCreate``)."""
    start, end = below(prefix)
    return Range(start, end, limit=1, sort_target=CREATE)


def last_created_before(prefix: str, revision: int) -> Range:
    """The range of the key created last before ``revision`` under ``prefix + '/'``
    (a waiter's predecessor), keys only: created at ``revision - 1`` or before,
    sorted by create revision, last first, ``limit=1`` (etcd's ``WithLastCreate``
    and ``WithMaxCreateRev``)."""
    start, end = below(prefix)
    return Range(
        start,
        end,
        limit=1,
        keys_only=True,
        descending=True,
        sort_target=CREATE,
        max_create_revision=revision - 1,
    )


def _quietly(cleanup: Callable[[], None]) -> None:
    try:
        cleanup()
    except Exception as exc:  # noqa: BLE001 - the lease then expires by itself within its TTL
        _log.warning("cleanup failed (the lease expires by itself): %s", exc)


class Lock:
    """A distributed lock (v3), from :meth:`EtcdMiddleware.lock`.

    ``with client.lock("/locks/db") as lock:`` waits for the lock (at most the
    lock's ``timeout``), runs the block while holding it, and releases it; when
    it cannot get the lock in time it raises :class:`EtcdLockTimeout` and the
    block does not run.  Writes that must only happen while the lock is held
    take ``if_held=lock`` (:meth:`EtcdMiddleware.set`, ``transform``): they raise
    :class:`EtcdLockLost` and write nothing once the lock was lost.

    One object is one would-be holder: give each thread or task its own (the
    same ``name`` from any number of clients and processes is the same lock).
    Not reentrant.

    :param client: the middleware (v3) whose connections carry every call.
    :param name: a path; the lock's keys are ``client.key(name) + '/<lease hex>'``.
    :param ttl: seconds of the lease behind each holding: how long the lock
        outlives a holder that stopped refreshing it (crashed, hung, cut off).
    :param timeout: default seconds :meth:`acquire` and ``with`` wait (``None``:
        no limit).
    :raises EtcdInvalidTree: bad ``name``, ``ttl`` or ``timeout`` (no request).
    :raises EtcdUnsupported: the client uses the v2 API.

    :attr name: the path given.
    :attr prefix: the etcd key the lock's keys are under: ``etcdctl lock <prefix>``.
    :attr key: this holder's key while it holds or waits (``None`` otherwise).
    :attr token: the fencing token while held: its key's create revision, larger
        for every later holder of the same lock (``None`` when not held).
    :attr lost: a :class:`threading.Event`, set when the lease behind the
        holding expired or was revoked, or its key was deleted, while held
        (cleared by :meth:`acquire`).
    """

    def __init__(
        self,
        client: EtcdMiddleware,
        name: str,
        *,
        ttl: float = 60,
        timeout: float | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.prefix = client.key(name)
        if not self.prefix:
            raise EtcdInvalidTree("a lock needs a name below the root, e.g. '/locks/db'")
        self.ttl = check_ttl(ttl)
        self.timeout = check_timeout(timeout)
        self.lost = threading.Event()
        self._queue: Queue | None = None
        self._watch: KeyWatch | None = None
        client._v3(name, "locks")

    def __repr__(self) -> str:
        return f"Lock(prefix={self.prefix!r}, ttl={self.ttl}, token={self.token})"

    @property
    def key(self) -> str | None:
        return None if self._queue is None else self._queue.key

    @property
    def token(self) -> int | None:
        queue = self._queue
        return queue.token if queue is not None and queue.first else None

    def locked(self) -> bool:
        """True while this object holds the lock and has not seen it lost (no request)."""
        return self.token is not None and not self.lost.is_set()

    @property
    def guard(self) -> Held:
        """The condition for ``if_held=``: this holder's key with its create revision.

        :raises EtcdLockLost: the lock is not held by this object.
        """
        queue = self._queue
        if queue is None or not queue.first:
            raise EtcdLockLost(f"the lock {self.prefix!r} is not held", key=self.prefix)
        return queue.held(self.prefix)

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock.

        Requests: ``LeaseGrant``, one txn that creates the key and reads the first
        key of the queue; while others hold it, one txn that finds the
        predecessor plus one ``Watch`` of that key, per predecessor's delete.  On
        a timeout or an error, the key is deleted and the lease revoked before
        returning.

        :param timeout: seconds to wait; ``None``: the lock's ``timeout``; ``0``:
            try once.
        :returns: True when held (:attr:`token` is set), False on timeout.
        :raises RuntimeError: this object already holds or waits for it.
        :raises EtcdLockLost: the lease was lost while waiting (the cluster did not
            answer for ``ttl`` seconds, or someone revoked it).
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        if self._queue is not None:
            raise RuntimeError(f"{self!r} is held or being acquired by this object already")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lost.clear()
        queue = Queue.join(self.client, self.prefix, self.ttl, b"", self.lost)
        self._queue = queue
        try:
            if not queue.wait(deadline):
                self._queue = None
                queue.leave()
                return False
        except BaseException:
            self._queue = None
            _quietly(queue.leave)
            raise
        self._watch = KeyWatch(queue._backend(), queue.key, queue.token + 1, self.lost.set)
        return True

    def release(self) -> None:
        """Give the lock up: delete its key and revoke its lease (``KV/DeleteRange``,
        ``Lease/LeaseRevoke``).  A lost lock is released without error.

        :raises RuntimeError: this object does not hold it.
        :raises EtcdConnectionFailed: no endpoint answered (the lease then expires
            within ``ttl``; the object no longer holds the lock).
        """
        queue, self._queue = self._queue, None
        if queue is None:
            raise RuntimeError(f"{self!r} is not held")
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        queue.leave()

    def __enter__(self) -> Lock:
        """:meth:`acquire` with the lock's ``timeout``.

        :raises EtcdLockTimeout: not obtained in time (the block does not run).
        """
        if not self.acquire():
            raise EtcdLockTimeout(
                f"the lock {self.prefix!r} was not obtained within {self.timeout} s",
                key=self.prefix,
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        """:meth:`release`."""
        self.release()


__all__ = ["Holder", "KeyWatch", "Lock", "Queue", "first_created", "last_created_before"]
