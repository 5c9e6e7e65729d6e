"""The v3 watch: a stream of :class:`~link.etcd.backends.base.Event` s over any transport.

Reconnects after a dropped stream, resuming from the revision after the last
event seen, so no event is lost while the compaction has not passed it; after a
compaction it resumes at the oldest revision kept.  A stream silent for
:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` is checked (gRPC keepalive
pings, or the gateway socket's timeout), so a member that hangs is left for the
next endpoint, which the opening of the new stream picks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ...errors import EtcdAuthError, EtcdError
from ...paths import SEP, encode_key, range_end
from ..base import Event
from .protocol import WatchCreate, WatchResult
from .transport import Transport, Unreachable, WatchStream

#: Seconds between two openings of a stream that keeps failing.
RETRY_SECONDS = 0.1


class V3Watch:
    """A watch on ``key`` and every key below it: iterate for :class:`Event` s.

    :param transport: the transport whose members are watched.
    :param key: the etcd key (``''`` for the whole keyspace).
    :param start_revision: the first revision reported; ``None`` from now on (a
        reopened stream then resumes after the revision the first stream was
        created at).
    """

    def __init__(self, transport: Transport, key: str, start_revision: int | None) -> None:
        self._transport = transport
        self._key = key
        self._next_revision = start_revision
        self._stream: WatchStream | None = None
        self._cancelled = threading.Event()
        self._refused_for_token = False

    def cancel(self) -> None:
        """Stop the watch; a blocked iteration ends."""
        self._cancelled.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def __iter__(self) -> Iterator[Event]:
        while not self._cancelled.is_set():
            try:
                yield from self._follow()
            except Unreachable:
                self._transport.failover.skip(self._transport.failover.current)
            except EtcdAuthError:
                if self._refused_for_token or not self._transport.endpoints:
                    raise
                self._refused_for_token = True  # once more with a new token
            self._cancelled.wait(RETRY_SECONDS)

    def _create(self) -> WatchCreate:
        watch_key = encode_key(self._key) if self._key else SEP.encode()
        return WatchCreate(watch_key, range_end(watch_key), self._next_revision or 0, prev_kv=True)

    def _follow(self) -> Iterator[Event]:
        stream = self._transport.open_watch(self._create(), self._key)
        self._stream = stream
        if self._cancelled.is_set():
            stream.cancel()
            return
        for answer in stream:
            if answer.canceled:
                self._canceled(answer, stream)
                stream.cancel()
                return
            if answer.created:
                self._refused_for_token = False
                if self._next_revision is None:
                    # watching "from now": a reopened stream resumes after this revision
                    self._next_revision = answer.revision + 1
            yield from self._events(answer)

    def _canceled(self, answer: WatchResult, stream: WatchStream) -> None:
        """etcd ended the watch: the start revision was compacted (resume at the oldest
        kept one), or the stream was refused, typically for an expired token."""
        if answer.compact_revision:
            self._next_revision = answer.compact_revision
            return
        forget = getattr(stream, "forget_token", None)
        if forget is not None:
            forget()
        if self._refused_for_token:
            raise EtcdError(
                f"etcd refused the watch: {answer.cancel_reason or 'canceled'}",
                endpoints=self._transport.endpoints,
                key=self._key,
            )
        self._refused_for_token = True

    def _events(self, answer: WatchResult) -> Iterator[Event]:
        inside = self._key + SEP
        for event in answer.events:
            kv = event.kv
            if self._key and kv.key != self._key and not kv.key.startswith(inside):
                continue  # e.g. '/app-x' for a watch on '/app'
            self._next_revision = kv.mod_revision + 1
            prev = event.prev_kv
            yield Event(
                event.type, kv.key, kv.value, kv.mod_revision, None if prev is None else prev.value
            )
