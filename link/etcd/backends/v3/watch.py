"""The v3 watch: a stream of :class:`~link.etcd.backends.base.Event` s over any transport.

Reconnects after a dropped stream, resuming from the revision after the last
event seen, so no event is lost while etcd keeps that history.  When it does not
(etcd compacted past the revision to resume from), the iteration raises
:class:`~link.etcd.errors.EtcdCompacted` carrying the oldest revision kept: it
never skips events silently (:class:`link.etcd.watch.TreeWatch` then reads the
subtree again).

Streams are opened with etcd's *require leader* option (gRPC metadata
``hasleader=true``, the gateway's ``Grpc-Metadata-hasleader: true`` header): a
member without a leader refuses them, and ends the ones it has a few election
timeouts after it lost its leader, so a watch leaves a member cut off from the
majority.  A stream silent for the transport's ``watch_idle_seconds`` (default
:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS`) is checked as well (see the
transports).

A stream that keeps failing is opened again after :data:`RETRY_SECONDS`, the
pause doubling up to :data:`MAX_RETRY_SECONDS`, each failure logged (at
WARNING, then less and less often).  A stream refused for its token (expired,
or forgotten by a restarted member) is opened again with a new one; refused
again with the new token, the iteration raises.

A watch on ``key`` covers the key itself and every key starting with it (etcd
checks one permission for the whole range).  A role granted only the keys below
it (etcdctl's ``grant-permission --prefix=true role read /app/``) is refused
that range ("permission denied", also etcd's answer to a token it forgot, so a
new token is tried first): refused with the new token, the watch narrows, once
and at once, to the keys below ``key`` (``[key + '/', ...)``) and goes on (the
role could not read the key's own leaf anyway); refused there too, it raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from ...errors import EtcdAuthError, EtcdCompacted, EtcdError, EtcdPermissionDenied
from ...paths import SEP, below, encode_key, range_end
from ..base import Event
from .protocol import WatchCreate, WatchResult
from .transport import Transport, Unreachable, WatchStream

#: Seconds before a failed stream is opened again (doubled after each failure in a row).
RETRY_SECONDS = 0.1
#: The longest pause between two openings of a stream that keeps failing, in seconds.
MAX_RETRY_SECONDS = 2.0
#: The gRPC metadata (and, prefixed ``Grpc-Metadata-``, the gateway header) of etcd's
#: require-leader option.
REQUIRE_LEADER = ("hasleader", "true")

_log = logging.getLogger("link.etcd.watch")


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed openings in a row (1, 2, …)."""
    # at most 2**32: far above the bound, and no OverflowError after a long outage
    doublings = min(max(0, failures - 1), 32)
    return min(MAX_RETRY_SECONDS, RETRY_SECONDS * 2.0**doublings)


def log_failure(key: str, failures: int, reason: str, delay: float) -> None:
    """Log a failed stream: every one of the first three in a row, then the 8th,
    16th, … (a dead cluster must not flood the log)."""
    if failures <= 3 or failures & (failures - 1) == 0:
        _log.warning(
            "watch on %r: %s; opening it again in %.1f s (failure %d in a row)",
            key,
            reason,
            delay,
            failures,
        )


class V3Watch:
    """A watch on ``key`` and every key below it: iterate for :class:`Event` s.

    :param transport: the transport whose members are watched.
    :param key: the etcd key (``''`` for the whole keyspace).
    :param start_revision: the first revision reported; ``None`` from now on (a
        reopened stream then resumes after the revision the first stream was
        created at).
    :raises EtcdCompacted: (while iterating) the revision to resume from was
        compacted; ``compact_revision`` is the oldest one kept.
    :raises EtcdAuthError: (while iterating) etcd refused the watch again after a
        new token was obtained, or refused the credentials.
    """

    def __init__(self, transport: Transport, key: str, start_revision: int | None) -> None:
        self._transport = transport
        self._key = key
        self._next_revision = start_revision
        self._stream: WatchStream | None = None
        self._cancelled = threading.Event()
        self._refused_for_token = False
        self._failures = 0
        #: the role is not granted the key's own range: watch the keys below it only
        self._below_only = False
        #: just narrowed to the keys below: open again at once, not a failure
        self._narrowed = False

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
                reason = "the stream ended"
            except Unreachable as exc:
                self._transport.failover.skip(self._transport.failover.current)
                reason = f"member unreachable: {exc}"
            except EtcdAuthError as exc:
                self._refused(exc)
                reason = f"refused, authenticating again: {exc}"
            except Exception:
                if self._cancelled.is_set():
                    return  # e.g. the client closed the channel while the stream opened
                raise
            if self._cancelled.is_set():
                return
            self._cancelled.wait(self._pause(reason))

    def _pause(self, reason: str) -> float:
        """Seconds to wait before the stream is opened again: none right after the
        watch narrowed to the keys below (see :meth:`_canceled`), else
        :meth:`_failed`'s."""
        if self._narrowed:
            self._narrowed = False
            return 0.0
        return self._failed(reason)

    def _failed(self, reason: str) -> float:
        """Count a failed stream, log it; the seconds to wait before the next."""
        self._failures += 1
        delay = retry_delay(self._failures)
        log_failure(self._key, self._failures, reason, delay)
        return delay

    def _refused(self, exc: EtcdAuthError) -> None:
        """The stream was refused for its credentials: once more (the token was
        forgotten, a new one is obtained), or raise when it was new already."""
        if self._refused_for_token or not self._transport.endpoints:
            raise exc
        self._refused_for_token = True

    def _create(self) -> WatchCreate:
        if self._below_only:
            start, end = below(self._key)
        else:
            start = encode_key(self._key) if self._key else SEP.encode()
            end = range_end(start)
        return WatchCreate(start, end, self._next_revision or 0, prev_kv=True)

    def _follow(self) -> Iterator[Event]:
        stream = self._transport.open_watch(self._create(), self._key)
        self._stream = stream
        if self._cancelled.is_set():
            stream.cancel()
            return
        for answer in stream:
            if answer.canceled:
                stream.cancel()
                self._canceled(answer, stream)
                return
            if answer.created:
                self._opened(answer)
            yield from self._events(answer)

    def _opened(self, answer: WatchResult) -> None:
        """etcd accepted the stream: the failures in a row and the token refusal end."""
        if self._failures:
            _log.warning("watch on %r: open again after %d failures", self._key, self._failures)
        self._refused_for_token = False
        self._failures = 0
        if self._next_revision is None:
            # watching "from now": a reopened stream resumes after this revision
            self._next_revision = answer.revision + 1

    def _canceled(self, answer: WatchResult, stream: object) -> None:
        """etcd ended the watch: the start revision was compacted (raise
        :class:`EtcdCompacted`); the role may not read the key's whole range (narrow
        to the keys below it, once); or the stream was refused, typically for an
        expired or forgotten token (a new one is used next; raise when it was new).
        """
        if answer.compact_revision:
            raise EtcdCompacted(
                f"cannot resume the watch at revision {self._next_revision}: etcd compacted "
                f"its history, the oldest revision kept is {answer.compact_revision}",
                compact_revision=answer.compact_revision,
                endpoints=self._transport.endpoints,
                key=self._key,
            )
        reason = answer.cancel_reason or "canceled"
        denied = "permission denied" in reason
        if self._refused_for_token and denied and self._key and not self._below_only:
            # refused with a new token too (a stale token is refused the same way)
            _log.info("watch on %r: the role may read only below it; watching below", self._key)
            self._below_only = self._narrowed = True  # refused again: raise
            self._failures = 0
            return
        forget = getattr(stream, "forget_token", None)
        if forget is not None:
            forget()
        if self._refused_for_token:
            error = EtcdPermissionDenied if denied else EtcdError
            raise error(
                f"etcd refused the watch: {reason}",
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
