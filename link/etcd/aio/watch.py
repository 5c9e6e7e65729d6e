"""Async watches: the v3 watch's resume rules over an async stream, and the
iterators :meth:`AsyncEtcdMiddleware.watch` and ``watch_tree`` return.

:class:`AsyncV3Watch` is :class:`link.etcd.backends.v3.watch.V3Watch` (the
create request, what a canceled answer means, which events are ours, where to
resume) with its stream loop written with ``await``.  :class:`AsyncWatch` is
what users iterate: it ends when :meth:`AsyncWatch.aclose` is called (or
:meth:`AsyncWatch.cancel`, from another task), when the iterating task is
cancelled (the stream is closed on the way out) and when the client is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Final, Generic, TypeVar

from ..backends.base import Event
from ..backends.v3.protocol import Range
from ..backends.v3.transport import Unreachable
from ..backends.v3.watch import V3Watch
from ..errors import EtcdAuthError, EtcdCompacted, EtcdError, EtcdPermissionDenied
from ..paths import SEP, below, encode_key
from .driver import AsyncTransport, AsyncWatchStream

T = TypeVar("T")
_log = logging.getLogger("link.etcd.watch")


class _Signal:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: What :meth:`Reader.get` returns when nothing came in time (the read goes on).
TIMED_OUT: Final = _Signal("TIMED_OUT")
#: What :meth:`Reader.get` returns once :meth:`Reader.cancel` was called.
ENDED: Final = _Signal("ENDED")


def running(generator: AsyncGenerator[Any, Any]) -> bool:
    """True while ``generator`` runs (in a task awaiting it): it cannot be closed then."""
    return bool(getattr(generator, "ag_running", False))


class Reader(Generic[T]):
    """Reads a stream's items, each in a task of its own: waiting for one can time
    out without cancelling the read (a gRPC read that is cancelled ends its call),
    and :meth:`cancel`, a plain call, ends a wait from any task.

    :param receive: returns the next item.
    """

    def __init__(self, receive: Callable[[], Awaitable[T]]) -> None:
        self._receive = receive
        self._task: asyncio.Future[T] | None = None
        self._cancelled = False

    async def get(self, timeout: float | None = None) -> T | _Signal:
        """The next item; :data:`TIMED_OUT` after ``timeout`` seconds without one;
        :data:`ENDED` once cancelled.  Raises what the read raised."""
        if self._cancelled:
            return ENDED
        if self._task is None:
            self._task = asyncio.ensure_future(self._receive())
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            return TIMED_OUT
        task, self._task = self._task, None
        return ENDED if task.cancelled() else task.result()

    def cancel(self) -> None:
        """End the read in progress (its task is cancelled) and every later one."""
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        """:meth:`cancel`, and wait until the read's task has ended."""
        self.cancel()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task})


class AsyncV3Watch(V3Watch):
    """A watch on ``key`` and every key below it over an async transport: ``async
    for`` :class:`~link.etcd.backends.base.Event` s in :meth:`events`; resumes on
    another member after a dropped stream, like :class:`V3Watch`, whose rules it
    uses.  :meth:`cancel` (a plain call) ends the iteration."""

    _next_revision: int | None
    _refused_for_token: bool

    def __init__(self, transport: AsyncTransport, key: str, start_revision: int | None) -> None:
        super().__init__(transport, key, start_revision)  # type: ignore[arg-type]
        self._async_transport = transport
        self._stream: AsyncWatchStream | None = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[Event]:
        raise TypeError("an AsyncV3Watch is iterated with async for (see events())")

    async def pin(self) -> None:
        """Watching "from now on": fix now as the start (one ``count_only`` range for
        the store's revision), so that the changes made before the stream is
        opened are reported too.  A role granted only the keys below the watched key
        counts those instead."""
        if self._next_revision is None:
            key = encode_key(self._key) if self._key else SEP.encode()
            call = self._async_transport.call
            try:
                answer = await call(Range(key, count_only=True), self._key)
            except EtcdPermissionDenied:
                if not self._key:
                    raise
                answer = await call(Range(*below(self._key), count_only=True), self._key)
            self._next_revision = answer.revision + 1

    async def events(self) -> AsyncGenerator[Event, None]:
        """The events, until :meth:`cancel`; a failing stream is opened again as
        :class:`V3Watch` does (growing pauses, logged).

        :raises EtcdCompacted: the revision to resume from was compacted.
        :raises EtcdAuthError: etcd refused the watch twice, with a new token.
        """
        failover = self._transport.failover
        while not self._cancelled.is_set():
            try:
                async with contextlib.aclosing(self._follow_stream()) as stream:
                    async for event in stream:
                        yield event
                reason = "the stream ended"
            except Unreachable as exc:
                failover.skip(failover.current)
                reason = f"member unreachable: {exc}"
            except EtcdAuthError as exc:
                self._refused(exc)
                reason = f"refused, authenticating again: {exc}"
            if not self._cancelled.is_set():
                await asyncio.sleep(self._pause(reason))

    async def _follow_stream(self) -> AsyncGenerator[Event, None]:
        stream = await self._async_transport.open_watch(self._create(), self._key)
        self._stream = stream
        try:
            if self._cancelled.is_set():
                return
            async for answer in stream:
                if answer.canceled:
                    self._canceled(answer, stream)
                    return
                if answer.created:
                    self._opened(answer)
                for event in self._events(answer):
                    yield event
        finally:
            self._stream = None
            await stream.aclose()


async def tree_versions(
    snapshot: Callable[[], Awaitable[tuple[Any, int]]],
    watch: Callable[[int], AsyncWatch[Any]],
    opened: list[AsyncWatch[Any]],
    cancelled: Callable[[], bool],
) -> AsyncGenerator[tuple[Any, int], None]:
    """The items of an async tree watch: ``await snapshot()`` (``(value, revision)``)
    now, then after every change reported by ``watch(start_revision)`` (each
    watch opened is appended to ``opened``, for cancelling); when etcd compacted
    the history the watch was to resume from (:class:`EtcdCompacted`), the tree
    is read again, handed on, and watched from there: no change
    is lost.  Ends when ``cancelled()``."""
    value, revision = await snapshot()
    yield value, revision
    while not cancelled():
        watch_from = watch(revision + 1)
        opened.append(watch_from)
        try:
            async with watch_from as events:
                async for event in events:
                    if event.revision > revision:  # else covered by the last read
                        value, revision = await snapshot()
                        yield value, revision
            return
        except EtcdCompacted as exc:
            _log.warning("tree watch: %s; reading the tree again", exc)
            value, revision = await snapshot()
            yield value, revision
        finally:
            opened.remove(watch_from)


class AsyncWatch(Generic[T]):
    """An open watch: ``async for`` its items; an async context manager that
    closes it on exit.

    :param items: the async generator of items.
    :param cancel: ends an iteration in progress in another task (plain call).
    :param closed: called once the watch is closed (the client forgets it).
    :param start: awaited on entering ``async with`` (the watch reports what
        changes from then on).
    """

    def __init__(
        self,
        items: AsyncGenerator[T, None],
        cancel: Callable[[], None],
        closed: Callable[[AsyncWatch[Any]], None] = lambda watch: None,
        start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._items = items
        self._cancel = cancel
        self._closed = closed
        self._start = start
        self._cancelled = False

    def __aiter__(self) -> AsyncWatch[T]:
        return self

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` or :meth:`aclose` was called."""
        return self._cancelled

    async def __anext__(self) -> T:
        if self._cancelled:
            await self.aclose()
            raise StopAsyncIteration
        try:
            return await self._items.__anext__()
        except EtcdError:
            self._closed(self)
            if self._cancelled:  # closed meanwhile (the client's aclose): just the end
                raise StopAsyncIteration from None
            raise
        except BaseException:  # ended, failed or cancelled: the stream is closed
            self._closed(self)
            raise

    def cancel(self) -> None:
        """End the watch: an iteration waiting in another task ends
        (``StopAsyncIteration``) and its stream is closed."""
        self._cancelled = True
        self._cancel()

    async def aclose(self) -> None:
        """Close the watch and its stream (from the task that iterates it, or when
        no task does; from another task use :meth:`cancel`)."""
        self._cancelled = True
        self._cancel()
        if not running(self._items):
            await self._items.aclose()
        self._closed(self)

    async def __aenter__(self) -> AsyncWatch[T]:
        if self._start is not None:
            await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


__all__ = ["AsyncV3Watch", "AsyncWatch", "Reader", "running", "tree_versions"]
