"""AsyncLease: an etcd v3 lease for asyncio code, kept alive by a task.

The async twin of :class:`link.etcd.recipes.lease.Lease` (same TTL rules, same
revoke and loss semantics, see ``docs/leases.md``):

>>> async with client.lease(10, keepalive=True) as lease:     # doctest: +SKIP
...     await client.set("/services/api/host-1", {"port": 8080}, lease=lease)
...     await lease.lost.wait()                                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..backends.v3.engine import answer_as
from ..backends.v3.protocol import (
    LeaseGrant,
    LeaseKeepAlive,
    LeaseResult,
    LeaseRevoke,
    LeaseTimeToLive,
)
from ..errors import EtcdConnectionFailed, EtcdLeaseNotFound
from ..paths import SEP, decode_key
from ..recipes.lease import RETRY_DELAY, THREAD_PREFIX, _seconds

if TYPE_CHECKING:
    from .client import AsyncEtcdMiddleware

_log = logging.getLogger(__name__)


class AsyncLease:
    """An etcd v3 lease of ``client``'s cluster, granted when awaited or entered.

    ``async with client.lease(ttl) as lease`` grants it and revokes it on exit
    (deleting its keys); ``lease = await client.lease(ttl)`` grants it only.  Pass
    it (or its :attr:`id`) as ``lease=`` to :meth:`AsyncEtcdMiddleware.set`.

    :param ttl: seconds, a finite number > 0 (rounded up); etcd raises values
        below its minimum TTL.
    :param keepalive: refresh it from a task at about ``ttl / 3`` seconds until it
        is :attr:`lost`, revoked or closed (the client's ``aclose()`` closes it).
    :raises EtcdInvalidTree: ``ttl`` is not a number > 0 (before any request).

    :attr id: the lease id (0 until granted).
    :attr ttl: the TTL etcd granted, in seconds.
    :attr lost: an :class:`asyncio.Event`, set when the lease ended without this
        object revoking it (etcd says it is gone, or no refresh succeeded for
        ``ttl`` seconds).
    """

    def __init__(self, client: AsyncEtcdMiddleware, ttl: float, *, keepalive: bool = False) -> None:
        self.client = client
        self.id = 0
        self.ttl = 0
        self.lost = asyncio.Event()
        self._asked = _seconds(ttl)
        self._keepalive = keepalive
        self._task: asyncio.Task[None] | None = None
        self._revoked = False

    def __repr__(self) -> str:
        return f"AsyncLease(id={self.id}, ttl={self.ttl or self._asked})"

    async def _call(self, request: LeaseGrant | LeaseKeepAlive | LeaseTimeToLive) -> LeaseResult:
        """One lease request answered with a :class:`LeaseResult` (not ``LeaseRevoke``)."""
        return answer_as(LeaseResult, await self.client.transport.call(request))

    async def grant(self) -> AsyncLease:
        """Grant the lease (one ``Lease/LeaseGrant``; nothing when already granted)
        and start its keepalive task.

        :raises EtcdConnectionFailed: no endpoint answered.
        """
        if self.id:
            return self
        asked = time.monotonic()
        result = await self._call(LeaseGrant(self._asked))
        self.id, self.ttl = result.id, result.ttl
        if self._keepalive:
            expires = asked + result.ttl
            self._task = asyncio.create_task(
                self._keep_alive(expires), name=f"{THREAD_PREFIX}{self.id:x}"
            )
            self.client._leases.add(self)
        return self

    def __await__(self) -> Generator[Any, None, AsyncLease]:
        return self.grant().__await__()

    async def remaining(self) -> int:
        """Seconds left (``Lease/LeaseTimeToLive``): ``-1`` once it is gone."""
        return (await self._call(LeaseTimeToLive(self.id))).ttl

    async def keys(self) -> list[str]:
        """The paths (below the client's prefix) of the keys attached, sorted."""
        raw = (await self._call(LeaseTimeToLive(self.id, keys=True))).keys
        stem = self.client.key(SEP)
        return sorted(k[len(stem) :] for k in map(decode_key, raw) if k.startswith(stem + SEP))

    async def refresh(self) -> int:
        """Refresh it once (``Lease/LeaseKeepAlive``); the new TTL.

        :raises EtcdLeaseNotFound: the lease is gone; :attr:`lost` is set.
        """
        ttl = (await self._call(LeaseKeepAlive(self.id))).ttl
        if ttl <= 0:
            reason = f"lease {self.id} ({self.id:x}) is gone (expired or revoked)"
            self._lose(reason)
            raise EtcdLeaseNotFound(reason)
        return ttl

    async def close(self) -> None:
        """Stop the keepalive task (cancelled and awaited), without revoking."""
        task, self._task = self._task, None
        self.client._leases.discard(self)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})

    async def revoke(self) -> None:
        """:meth:`close`, then end the lease now: etcd deletes its keys
        (``Lease/LeaseRevoke``).  A lease already gone is not an error."""
        await self.close()
        if self._revoked or not self.id:
            return
        with contextlib.suppress(EtcdLeaseNotFound):  # gone: expired, revoked (by a lost try)
            await self.client.transport.call(LeaseRevoke(self.id))
        self._revoked = True

    async def __aenter__(self) -> AsyncLease:
        return await self.grant()

    async def __aexit__(self, *exc_info: object) -> None:
        """:meth:`revoke`; a lost lease whose cluster does not answer is left to
        expire (nobody refreshes it any more)."""
        try:
            await self.revoke()
        except EtcdConnectionFailed:
            if not self.lost.is_set():
                raise

    def _lose(self, reason: str) -> None:
        if self._revoked or self.lost.is_set():
            return
        _log.warning("%r lost: %s", self, reason)
        self.lost.set()

    async def _keep_alive(self, expires: float) -> None:
        """Refresh until cancelled or lost; ``expires`` (``time.monotonic()``) moves to
        each successful attempt's start + the TTL etcd returned."""
        wait = self.ttl / 3
        while True:
            await asyncio.sleep(wait)
            started = time.monotonic()
            try:
                ttl = (await self._call(LeaseKeepAlive(self.id))).ttl
            except Exception as exc:  # noqa: BLE001 - EtcdError or a bug: retry, then lost
                left = expires - time.monotonic()
                if left <= 0:
                    self._lose(f"no refresh succeeded for {self.ttl} s: {exc}")
                    return
                _log.info("%r: refresh failed, retrying: %s", self, exc)
                wait = min(RETRY_DELAY, left)
                continue
            if ttl <= 0:
                self._lose("etcd says it is gone (expired or revoked elsewhere)")
                return
            expires = started + ttl
            wait = max(0.0, started + ttl / 3 - time.monotonic())


__all__ = ["AsyncLease"]
