"""Lease: an etcd v3 lease, optionally kept alive by a background thread.

A lease is a timer on the etcd cluster: keys written with it are deleted, all at
once, when it expires (nobody refreshed it for ``ttl`` seconds) or is revoked.

>>> with client.lease(10, keepalive=True) as lease:          # doctest: +SKIP
...     client.set("/services/api/host-1", {"port": 8080}, lease=lease)
...     serve_forever(until=lease.lost)                       # doctest: +SKIP

Like etcd's Go ``concurrency.Session``: the keepalive thread refreshes the lease
at about a third of its TTL and sets :attr:`Lease.lost` when it could not keep
it (etcd says it is gone, or no refresh succeeded for ``ttl`` seconds).  Every
call goes through the middleware's v3 backend (failover, TLS, authentication);
on the v2 API leases do not exist and :class:`~link.etcd.errors.EtcdUnsupported`
is raised.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import EtcdConnectionFailed, EtcdInvalidTree, EtcdLeaseNotFound
from ..paths import SEP, decode_key

if TYPE_CHECKING:
    from ..backends.v3 import V3Backend
    from ..middleware import EtcdMiddleware

_log = logging.getLogger(__name__)

#: Seconds between two keepalive attempts after a failed one (start to start):
#: the thread retries sooner than its regular period but never hammers.
RETRY_DELAY = 1.0

#: Threads that keep a lease alive are named ``THREAD_PREFIX + hex id``.
THREAD_PREFIX = "link.etcd.lease "


def check_ttl(ttl: Any, what: str = "a lease ttl") -> float:
    """``ttl`` when it is a finite number of seconds > 0.

    :param what: what ``ttl`` is, for the message (``"a lock ttl"``).
    :raises EtcdInvalidTree: anything else (``bool`` included).
    """
    if (
        not isinstance(ttl, (int, float))
        or isinstance(ttl, bool)
        or not math.isfinite(ttl)
        or not ttl > 0
    ):
        raise EtcdInvalidTree(f"{what} must be a number of seconds > 0, not {ttl!r}")
    return ttl


def _seconds(ttl: Any) -> int:
    """``ceil(ttl)`` for a finite number of seconds > 0 (etcd's leases count whole
    seconds).

    :raises EtcdInvalidTree: anything else (``bool`` included).
    """
    return math.ceil(check_ttl(ttl))


class Lease:
    """An etcd v3 lease of ``client``'s cluster.

    Get one with :meth:`EtcdMiddleware.lease` (:meth:`grant`) or
    :meth:`EtcdMiddleware.lease_from_id` (:meth:`attach`); pass it (or its
    :attr:`id`) as ``lease=`` to :meth:`EtcdMiddleware.set`.  It is a context
    manager: leaving the ``with`` block revokes it (deleting its keys) and stops
    its keepalive.  Thread-safe.  A keepalive thread runs until :meth:`close`,
    :meth:`revoke` or the lease is lost, even when nothing refers to the lease
    any more.

    :param client: the middleware whose v3 backend carries every call.
    :param lease_id: etcd's id of the lease (an int64 > 0).
    :param ttl: seconds etcd granted (never less than etcd's minimum, 2 s by default).
    :param keepalive: start a daemon thread that refreshes the lease at about
        ``ttl / 3`` seconds until it is :attr:`lost`, revoked or closed.
    :param remaining: seconds left now (default ``ttl``): how long the keepalive
        may fail before it gives the lease up.

    :attr id: the lease id (``int``), what etcd and ``etcdctl lease`` show (in hex).
    :attr ttl: the TTL etcd granted, in seconds (``int``).
    :attr lost: a :class:`threading.Event`, set when the lease ended without this
        object revoking it: a keepalive or :meth:`refresh` got TTL ``<= 0`` (it
        expired or was revoked elsewhere), or the keepalive thread had no
        successful refresh for ``ttl`` seconds (the cluster was unreachable).  Its
        keys are then gone, or about to be.
    """

    def __init__(
        self,
        client: EtcdMiddleware,
        lease_id: int,
        ttl: int,
        *,
        keepalive: bool = False,
        remaining: float | None = None,
    ) -> None:
        self.client = client
        self.id = lease_id
        self.ttl = ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._revoked = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if keepalive:
            expires = time.monotonic() + (ttl if remaining is None else remaining)
            self._thread = threading.Thread(
                target=self._keep_alive,
                args=(expires,),
                name=f"{THREAD_PREFIX}{lease_id:x}",
                daemon=True,
            )
            self._thread.start()

    # -- getting one ---------------------------------------------------------

    @classmethod
    def grant(cls, client: EtcdMiddleware, ttl: float, *, keepalive: bool = False) -> Lease:
        """A new lease of ``ceil(ttl)`` seconds (one ``Lease/LeaseGrant``).

        :param ttl: seconds, a finite number > 0; etcd raises values below its
            minimum TTL (2 s with default election settings), see :attr:`ttl`.
        :param keepalive: refresh it in a daemon thread (see :class:`Lease`).
        :raises EtcdInvalidTree: ``ttl`` is not a number > 0 (before any request).
        :raises EtcdUnsupported: the middleware uses the v2 API.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        seconds = _seconds(ttl)
        backend = client._v3(SEP, "leases")
        asked = time.monotonic()
        result = backend.lease_grant(seconds)
        remaining = max(0.0, result.ttl - (time.monotonic() - asked))
        return cls(client, result.id, result.ttl, keepalive=keepalive, remaining=remaining)

    @classmethod
    def attach(cls, client: EtcdMiddleware, lease_id: int, *, keepalive: bool = False) -> Lease:
        """The existing lease ``lease_id`` (one ``Lease/LeaseTimeToLive``, which also
        gives its granted TTL).

        :param lease_id: the lease's id, an ``int`` > 0 (e.g. another process's
            :attr:`id`).
        :param keepalive: refresh it in a daemon thread (see :class:`Lease`).
        :raises EtcdInvalidTree: ``lease_id`` is not an int > 0 (before any request).
        :raises EtcdLeaseNotFound: etcd does not know the lease (never granted,
            expired or revoked); not a ``KeyError``.
        :raises EtcdUnsupported: the middleware uses the v2 API.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        if not isinstance(lease_id, int) or isinstance(lease_id, bool) or lease_id <= 0:
            raise EtcdInvalidTree(f"a lease id must be an int > 0, not {lease_id!r}")
        backend = client._v3(SEP, "leases")
        asked = time.monotonic()
        result = backend.lease_time_to_live(lease_id)
        if result.ttl < 0:
            raise EtcdLeaseNotFound(
                f"lease {lease_id} ({lease_id:x}) does not exist (never granted, expired "
                "or revoked)",
                endpoints=backend.endpoints,
            )
        remaining = max(0.0, result.ttl - (time.monotonic() - asked))
        return cls(client, lease_id, result.granted_ttl, keepalive=keepalive, remaining=remaining)

    def __repr__(self) -> str:
        return f"Lease(id={self.id}, ttl={self.ttl})"

    def _backend(self) -> V3Backend:
        return self.client._v3(SEP, "leases")

    # -- asking etcd -----------------------------------------------------------

    def remaining(self) -> int:
        """Seconds left before the lease expires (one ``Lease/LeaseTimeToLive``).

        :returns: ``0`` to :attr:`ttl` while the lease exists (etcd rounds down, so
            ``0`` means "less than a second"); ``-1`` once it is gone (expired or
            revoked): test ``remaining() < 0`` for "gone".
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        return self._backend().lease_time_to_live(self.id).ttl

    def keys(self) -> list[str]:
        """The paths of the keys attached to the lease, sorted (one
        ``Lease/LeaseTimeToLive`` with ``keys``).

        Paths are relative to the middleware's ``prefix``, in key form like
        :meth:`EtcdMiddleware.children` (``'/svc/b/00000000000000000000'`` for the
        first item of a list at ``/svc/b``); keys outside the prefix (attached by
        another client) are left out.  ``[]`` when the lease is gone.

        :raises EtcdConnectionFailed: no endpoint answered.
        """
        raw = self._backend().lease_time_to_live(self.id, keys=True).keys
        stem = self.client.key(SEP)
        paths = []
        for key in map(decode_key, raw):
            if key.startswith(stem + SEP):
                paths.append(key[len(stem) :])
        return sorted(paths)

    def refresh(self) -> int:
        """Refresh the lease once (one ``Lease/LeaseKeepAlive``): it lives ``ttl``
        seconds again from now.

        :returns: the new TTL in seconds (the granted :attr:`ttl`).
        :raises EtcdLeaseNotFound: the lease is gone (expired or revoked);
            :attr:`lost` is set unless this object revoked it.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        ttl = self._backend().lease_keepalive(self.id)
        if ttl <= 0:
            reason = f"lease {self.id} ({self.id:x}) is gone (expired or revoked)"
            self._lose(reason)
            raise EtcdLeaseNotFound(reason)
        return ttl

    # -- ending it -------------------------------------------------------------

    def close(self) -> None:
        """Stop the keepalive thread, without revoking: the lease then expires
        ``ttl`` seconds after its last refresh unless someone refreshes it.

        Waits for the thread to end, which may take one request
        (``read_timeout`` seconds per endpoint) when it is refreshing.
        Idempotent; no request is sent.
        """
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def revoke(self) -> None:
        """Stop the keepalive (:meth:`close`) and end the lease now: etcd deletes
        every key attached to it (one ``Lease/LeaseRevoke``).

        Idempotent: a lease that is already gone (revoked before, by anyone, or
        expired) is not an error; once this call succeeded, calling it again sends
        nothing.

        :raises EtcdConnectionFailed: no endpoint answered (the lease may live on
            until it expires; calling again is safe).
        """
        self.close()
        if self._revoked:
            return
        with contextlib.suppress(EtcdLeaseNotFound):  # gone: expired, revoked (by a lost try)
            self._backend().lease_revoke(self.id)
        self._revoked = True

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """:meth:`revoke`; when the lease is already :attr:`lost` and the cluster
        still does not answer, the error is dropped: nobody refreshes the lease
        any more, so etcd ends it (and deletes its keys) within ``ttl`` seconds."""
        try:
            self.revoke()
        except EtcdConnectionFailed:
            if not self.lost.is_set():
                raise

    # -- the keepalive thread ----------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self._revoked or self.lost.is_set():
            return
        _log.warning("%r lost: %s", self, reason)
        self.lost.set()

    def _keep_alive(self, expires: float) -> None:
        """Refresh until stopped or lost.

        :param expires: ``time.monotonic()`` at which the lease ends unless
            refreshed; each success moves it to the attempt's start + the TTL
            etcd returned (the earliest the server may let it expire).
        """
        # an attached lease may have less than its TTL left: refresh in time for that
        wait = min(self.ttl, max(0.0, expires - time.monotonic())) / 3
        failing = False
        while not self._stop.wait(wait):
            started = time.monotonic()
            if failing and started >= expires:  # woken at the deadline: no more tries
                self._lose(f"no refresh succeeded for {self.ttl} s")
                return
            try:
                ttl = self._backend().lease_keepalive(self.id)
            except Exception as exc:  # noqa: BLE001 - EtcdError or a bug: retry, then lost
                now = time.monotonic()
                if now >= expires:
                    self._lose(f"no refresh succeeded for {self.ttl} s: {exc}")
                    return
                _log.info("%r: refresh failed, retrying: %s", self, exc)
                failing = True
                wait = min(max(0.0, started + RETRY_DELAY - now), expires - now)
                continue
            failing = False
            if ttl <= 0:
                self._lose("etcd says it is gone (expired or revoked elsewhere)")
                return
            expires = started + ttl
            wait = max(0.0, started + ttl / 3 - time.monotonic())


__all__ = ["Lease"]
