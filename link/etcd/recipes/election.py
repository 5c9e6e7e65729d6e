"""Election: leader election with a fencing token, interoperable with ``etcdctl elect``.

etcd's own recipe (Go ``concurrency.Election``) on the queue of :mod:`.lock`:
each candidate creates ``<name>/<lease id in hex>`` holding its value, attached
to a lease kept alive in the background; the candidate whose key was created
first is the leader, its value is the leader's value and its key's create
revision is the leadership's **token**.  Followers wait for their predecessor's
delete only.  ``etcdctl elect NAME`` sees our leader and we see its, with
``NAME = client.key(name)``.

>>> election = client.election("/elections/scheduler", ttl=10)   # doctest: +SKIP
>>> leadership = election.campaign("host-1")                      # doctest: +SKIP
>>> client.set("/jobs/next", 42, if_held=election)                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..backends.v3.engine import answer_as
from ..backends.v3.guarded import Held
from ..backends.v3.protocol import Put, RangeResult
from ..errors import EtcdInvalidTree, EtcdLockLost, EtcdLockTimeout
from .lock import KeyWatch, Queue, _quietly, check_timeout, check_ttl, first_created, txn

if TYPE_CHECKING:
    from ..backends.v3 import V3Backend
    from ..middleware import EtcdMiddleware

_log = logging.getLogger(__name__)


class Leader(NamedTuple):
    """A leadership: the leader's ``value`` (``str``, or ``bytes`` when not UTF-8)
    and its ``token`` (the create revision of its key; larger for every later
    leader of the same election)."""

    value: str | bytes
    token: int


def _encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise EtcdInvalidTree(f"a candidate's value must be a str or bytes, not {value!r}")


def _decode(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


class Observer:
    """The thread of :meth:`Election.observe`; :meth:`stop` ends it."""

    def __init__(
        self, election: Election, callback: Callable[[Leader | None], bool | None]
    ) -> None:
        self._election = election
        self._callback = callback
        self._stopped = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(
            target=self._run, name=f"link.etcd.election observe {election.prefix}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        last: Any = object()
        while not self._stopped.is_set():
            try:
                current, revision = self._election._leader()
                if current != last:
                    last = current
                    if self._callback(current) is False:
                        return
                backend = self._election._backend()
                self._watch = backend.watch(self._election.prefix, revision + 1)
                if self._stopped.is_set():
                    return
                for _event in self._watch:
                    current, revision = self._election._leader()
                    if current != last:
                        last = current
                        if self._callback(current) is False:
                            return
            except Exception as exc:  # noqa: BLE001 - logged; the cluster may come back
                _log.warning("observing %r: %s", self._election.prefix, exc)
                self._stopped.wait(1.0)
            finally:
                if self._watch is not None:
                    self._watch.cancel()

    def stop(self) -> None:
        """Stop observing; waits for a callback that is running to return."""
        self._stopped.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join()


class Election:
    """A leader election (v3), from :meth:`EtcdMiddleware.election`.

    One object is one candidate (give each its own).  :meth:`campaign` blocks
    until it leads; while it leads, writes with ``if_held=election`` succeed and
    raise :class:`EtcdLockLost` once the leadership is lost (:attr:`lost`).

    :param client: the middleware (v3).
    :param name: a path; candidates' keys are ``client.key(name) + '/<lease hex>'``.
    :param ttl: seconds of each candidacy's lease: how long a crashed leader
        stays leader.
    :raises EtcdInvalidTree: bad ``name`` or ``ttl``.
    :raises EtcdUnsupported: the client uses the v2 API.

    :attr prefix: the etcd key the candidates are under: ``etcdctl elect <prefix>``.
    :attr token: the leadership's token while this candidate leads, else ``None``.
    :attr lost: a :class:`threading.Event`, set when the lease behind the
        leadership expired or was revoked, or its key was deleted (cleared by
        :meth:`campaign`).
    """

    def __init__(self, client: EtcdMiddleware, name: str, *, ttl: float = 60) -> None:
        self.client = client
        self.name = name
        self.prefix = client.key(name)
        if not self.prefix:
            raise EtcdInvalidTree("an election needs a name below the root, e.g. '/elections/x'")
        self.ttl = check_ttl(ttl)
        self.lost = threading.Event()
        self._queue: Queue | None = None
        self._watch: KeyWatch | None = None
        client._v3(name, "elections")

    def __repr__(self) -> str:
        return f"Election(prefix={self.prefix!r}, ttl={self.ttl}, token={self.token})"

    def _backend(self) -> V3Backend:
        return self.client._v3(self.name, "elections")

    @property
    def token(self) -> int | None:
        queue = self._queue
        return queue.token if queue is not None and queue.first else None

    @property
    def guard(self) -> Held:
        """The condition for ``if_held=``: this leader's key with its create revision.

        :raises EtcdLockLost: this candidate does not lead.
        """
        queue = self._queue
        if queue is None or not queue.first:
            raise EtcdLockLost(f"not the leader of {self.prefix!r}", key=self.prefix)
        return queue.held(self.prefix)

    def campaign(self, value: str | bytes, timeout: float | None = None) -> Leader:
        """Stand as candidate with ``value`` and block until this candidate leads.

        Requests: ``LeaseGrant``, one txn that creates the key and reads the
        leader's; then, while others lead, per predecessor's delete, one txn
        that finds the predecessor and a ``Watch`` of its key.

        :param value: what :meth:`leader` (and ``etcdctl elect -l``) shows.
        :param timeout: seconds to wait (``None``: no limit).
        :returns: the leadership, :class:`Leader` ``(value, token)``.
        :raises EtcdLockTimeout: not leader within ``timeout`` (the candidacy is
            withdrawn: key deleted, lease revoked).
        :raises EtcdLockLost: the lease was lost while waiting.
        :raises RuntimeError: this object is already a candidate.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        raw = _encode(value)
        timeout = check_timeout(timeout)
        if self._queue is not None:
            raise RuntimeError(f"{self!r} is a candidate already")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.lost.clear()
        queue = Queue.join(self.client, self.prefix, self.ttl, raw, self.lost)
        self._queue = queue
        try:
            won = queue.wait(deadline)
        except BaseException:
            self._queue = None
            _quietly(queue.leave)
            raise
        if not won:
            self._queue = None
            queue.leave()
            raise EtcdLockTimeout(
                f"not the leader of {self.prefix!r} within {timeout} s", key=self.prefix
            )
        self._watch = KeyWatch(self._backend(), queue.key, queue.token + 1, self.lost.set)
        return Leader(_decode(raw), queue.token)

    def proclaim(self, value: str | bytes) -> None:
        """Change the leader's value without an election (one txn: put, if this
        candidate's key still has its create revision).

        :raises EtcdLockLost: this candidate does not lead (any more).
        """
        held = self.guard
        queue = self._queue
        assert queue is not None
        answer = txn(
            self._backend(),
            [held.compare()],
            [Put(held.key, _encode(value), queue.lease.id)],
            key=self.prefix,
        )
        if not answer.succeeded:
            raise held.lost()

    def resign(self) -> None:
        """Stop leading (or stop waiting): delete the key and revoke the lease.
        Nothing happens when this object is not a candidate.

        :raises EtcdConnectionFailed: no endpoint answered (the lease expires
            within ``ttl``).
        """
        queue, self._queue = self._queue, None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
        if queue is not None:
            queue.leave()

    def leader(self) -> Leader | None:
        """The current leader, whoever elected it (this object, another process,
        ``etcdctl elect``): the value and create revision of the key created
        first under the prefix; ``None`` when there is no candidate.

        Requests: one range of the prefix sorted by create revision, ``limit=1``
        (etcd's Go ``Election.Leader``).

        :raises EtcdConnectionFailed: no endpoint answered.
        """
        return self._leader()[0]

    def _leader(self) -> tuple[Leader | None, int]:
        """:meth:`leader`, and the revision at which it was true."""
        request = first_created(self.prefix)
        answer = answer_as(RangeResult, self._backend().transport.call(request, self.prefix))
        if not answer.kvs:
            return None, answer.revision
        first = answer.kvs[0]
        return Leader(_decode(first.value), first.create_revision), answer.revision

    def observe(self, callback: Callable[[Leader | None], bool | None]) -> Observer:
        """Call ``callback(leader)`` in a background thread with the current leader
        (:meth:`leader`), then whenever it changes (a new leader, or a new value):
        one ``Watch`` of the prefix, and one :meth:`leader` per change seen, so
        changes closer together than that read may be reported once, as the
        latest (etcd's Go ``Observe`` reads the same way).  ``callback``
        returning ``False`` stops it; an exception it raises is logged.

        :returns: the :class:`Observer`; ``stop()`` ends it.
        """
        return Observer(self, callback)

    def __enter__(self) -> Election:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """:meth:`resign`."""
        self.resign()


__all__ = ["Election", "Leader", "Observer"]
