"""What a v3 transport offers the engine's drivers, and the failover both share.

A transport carries :mod:`.protocol` requests to one cluster: gRPC channels
(:mod:`.grpc`) or HTTP sessions to etcd's JSON gateway (:mod:`.gateway`).
:class:`Failover` is the one loop that picks the endpoint: it starts at the
member that answered last and tries each member once, waiting ``read_timeout``
seconds for each, so a member that hangs costs one ``read_timeout`` and later
requests go straight to the member that answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from ...errors import EtcdConnectionFailed, EtcdError, EtcdTimeout
from .protocol import Request, Result, WatchCreate, WatchResult

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
        tried: list[str] = []
        timed_out = False
        last: Unreachable | None = None
        for index, member in self.order():
            tried.append(self.urls[index])
            try:
                result = send(member)
            except Unreachable as exc:
                timed_out = timed_out or exc.timed_out
                last = exc
                continue
            self.current = index
            return result
        error = EtcdTimeout if timed_out else EtcdConnectionFailed
        raise error(
            f"no etcd endpoint answered (tried {len(tried)} of {len(self.members)}, "
            f"{self.read_timeout} s each): {last}",
            endpoints=tried,
            key=key,
        ) from last


class WatchStream(Protocol):
    """One open watch stream: iterate for its answers; ``cancel()`` from any thread
    ends the iteration."""

    def __iter__(self) -> Iterator[WatchResult]: ...

    def cancel(self) -> None: ...


class Transport(Protocol):
    """A synchronous carrier of v3 requests to one cluster.  Thread-safe."""

    endpoints: tuple[str, ...]
    failover: Failover[object]

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
