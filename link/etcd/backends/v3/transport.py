"""What a v3 transport offers the engine's drivers, and the failover both share.

A transport carries :mod:`.protocol` requests to one cluster: gRPC channels
(:mod:`.grpc`) or HTTP sessions to etcd's JSON gateway (:mod:`.gateway`), and
their asyncio twins in :mod:`link.etcd.aio`.  :class:`Failover` picks the
endpoint for all of them (:meth:`Failover.attempt`, :meth:`Failover.attempt_async`,
one walk over the members, :class:`Tries`): it starts at the member that answered
last and tries each member once, waiting ``read_timeout`` seconds for each, so a
member that hangs costs one ``read_timeout`` and later requests go straight to
the member that answered.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ...errors import EtcdConnectionFailed, EtcdError, EtcdTimeout
from ...settings import EtcdSettings
from .protocol import Request, Result, WatchCreate, WatchResult, mark_retried, retry_elsewhere

M = TypeVar("M")
T = TypeVar("T")


class Unreachable(Exception):
    """Raised by a transport's send when a member did not answer usefully (refused,
    reset, timed out, no leader): the next member is tried.

    :param timed_out: the member did not answer within ``read_timeout``.
    """

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def unreachable(code: int, message: str) -> Unreachable | None:
    """The :class:`Unreachable` to raise for an etcd error answer (gRPC ``code``,
    etcd's ``message``) that means "try the next member"
    (:func:`.protocol.retry_elsewhere`); None for a refusal to report."""
    timed_out = retry_elsewhere(code, message)
    return None if timed_out is None else Unreachable(message, timed_out=timed_out)


class Failover(Generic[M]):
    """The members of a cluster (any per-endpoint state ``M``) and which answered last.

    :param members: ``(url, member)`` per endpoint, in the settings' order.
    :param read_timeout: seconds each member is given per attempt.
    """

    def __init__(self, members: Sequence[tuple[str, M]], read_timeout: float) -> None:
        self.urls: tuple[str, ...] = tuple(url for url, _ in members)
        self.members: list[M] = [member for _, member in members]
        self.read_timeout = read_timeout
        self.current = 0

    @classmethod
    def of(cls, settings: EtcdSettings, member: Callable[[str], M]) -> Failover[M]:
        """``member(url)`` for each endpoint of ``settings.urls``, ``read_timeout`` each."""
        return cls([(url, member(url)) for url in settings.urls], settings.read_timeout)

    def order(self) -> Iterator[tuple[int, M]]:
        """Every member once, starting at the one that answered last."""
        count = len(self.members)
        for step in range(count):
            index = (self.current + step) % count
            yield index, self.members[index]

    def skip(self, index: int) -> None:
        """Make the member after ``index`` the first to try (``index`` did not answer)."""
        self.current = (index + 1) % len(self.members)

    def attempt(self, send: Callable[[M], T], key: str | None = None) -> T:
        """``send(member)`` on each member in turn until one answers.

        :raises EtcdConnectionFailed: (or :class:`EtcdTimeout` when one timed out)
            naming every endpoint tried, when ``send`` raised :class:`Unreachable`
            for each.  Other exceptions of ``send`` propagate at once.
        """
        started, first = time.monotonic(), self.current
        try:  # the member that answered last, without a walk (most requests)
            return send(self.members[first])
        except Unreachable as exc:
            tries = Tries(self, key, started).after(first, exc)
        for member in tries:
            try:
                return tries.answered(send(member))
            except Unreachable as exc:
                tries.failed(exc)
        raise tries.error() from tries.last

    async def attempt_async(self, send: Callable[[M], Awaitable[T]], key: str | None = None) -> T:
        """:meth:`attempt` for a coroutine ``send`` (the asyncio transports)."""
        started, first = time.monotonic(), self.current
        try:
            return await send(self.members[first])
        except Unreachable as exc:
            tries = Tries(self, key, started).after(first, exc)
        for member in tries:
            try:
                return tries.answered(await send(member))
            except Unreachable as exc:
                tries.failed(exc)
        raise tries.error() from tries.last


class Tries(Generic[M]):
    """One request's walk over the members of ``failover``, for :meth:`Failover.attempt`
    and :meth:`Failover.attempt_async`, once the member that answered last did not
    (:meth:`after`): iterate for each other member once; :meth:`answered` makes the
    member that answered the first of the next walk; :meth:`failed` records a member
    that did not; :meth:`error` is what to raise when none answered.

    :param started: ``time.monotonic()`` when the request was first sent.
    """

    def __init__(self, failover: Failover[M], key: str | None, started: float) -> None:
        self._failover = failover
        self._key = key
        self._tried: list[str] = []
        self._index = failover.current
        self._timed_out = False
        self._started = started
        self._reasons: list[str] = []
        self.last: Unreachable | None = None

    def after(self, index: int, exc: Unreachable) -> Tries[M]:
        """Record that member ``index``, tried first, failed with ``exc``; the walk
        then goes on from the member after it.  Returns ``self``."""
        self._index = index
        self._tried.append(self._failover.urls[index])
        self.failed(exc)
        return self

    def __iter__(self) -> Iterator[M]:
        failover, first = self._failover, self._index
        count = len(failover.members)
        for step in range(1, count):
            self._index = index = (first + step) % count
            self._tried.append(failover.urls[index])
            yield failover.members[index]

    def answered(self, result: T) -> T:
        self._failover.current = self._index
        if self.last is not None:  # an earlier member may have applied it: say so
            mark_retried(result)
        return result

    def failed(self, exc: Unreachable) -> None:
        self._timed_out = self._timed_out or exc.timed_out
        self.last = exc
        self._reasons.append(f"{self._failover.urls[self._index]}: {exc}")

    def error(self) -> EtcdConnectionFailed:
        """:class:`EtcdConnectionFailed` (:class:`EtcdTimeout` when one timed out)
        naming every endpoint tried."""
        failover = self._failover
        error = EtcdTimeout if self._timed_out else EtcdConnectionFailed
        return error(
            f"no etcd endpoint answered (tried {len(self._tried)} of {len(failover.members)} "
            f"in {time.monotonic() - self._started:.1f} s, read_timeout "
            f"{failover.read_timeout} s each): {'; '.join(self._reasons)}",
            endpoints=self._tried,
            key=self._key,
        )


class WatchStream(Protocol):
    """One open watch stream: iterate for its answers; ``cancel()`` from any thread
    ends the iteration."""

    def __iter__(self) -> Iterator[WatchResult]: ...

    def cancel(self) -> None: ...


class Transport(Protocol):
    """A synchronous carrier of v3 requests to one cluster.  Thread-safe."""

    endpoints: tuple[str, ...]
    failover: Failover[Any]

    def call(self, request: Request, key: str | None = None) -> Result:
        """Send one request (failing over between endpoints) and return its answer.

        :raises EtcdError: etcd refused it (translated by
            :func:`.protocol.error_for`), or no endpoint answered.
        """
        ...

    def call_many(
        self, requests: Iterable[Request], limit: int, key: str | None = None
    ) -> list[Result | EtcdError]:
        """Send ``requests`` with at most ``limit`` in flight; each answer or error, in order."""
        ...

    def open_watch(self, create: WatchCreate, key: str | None = None) -> WatchStream:
        """Open a watch stream on the member :attr:`failover` would try first.

        :raises Unreachable: that member did not accept the stream within
            ``read_timeout`` (the caller moves on with :meth:`Failover.skip`).
        """
        ...

    def close(self) -> None:
        """Close every connection; the transport must not be used afterwards."""
        ...
