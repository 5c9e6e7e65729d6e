"""Watches: decoded key events (:class:`Watch`), and :class:`TreeWatch`, which is
told when a subtree changes (like kazoo's ``DataWatch``).

>>> def on_change(value, revision):          # doctest: +SKIP
...     print(revision, value)
>>> watch = TreeWatch(client, "/myservice/config", on_change)   # doctest: +SKIP
>>> watch.stop()                             # doctest: +SKIP

The callback is called at once with the current value (``None`` when nothing is
stored), then once per change with the new value and the revision (v3) or index
(v2) it was read at.  One watch request on the subtree's prefix carries every
change (no polling, no request per key); after an event the subtree is read
again with one request, and events already covered by that read are skipped,
so a write of many keys produces one callback, not one per key.  The callback
runs in the watch's own daemon thread; returning ``False`` stops the watch.

No change is lost: a dropped stream resumes after the last revision read; when
etcd can no longer replay from there (v3: compacted; v2: its 1,000-event history
moved on) the subtree is read again and the callback called with it, so it
always ends up with the current value.  Closing the client stops its watches.

A watch does not stay on a member cut off from the majority: v3 streams carry
etcd's require-leader option (such a member ends them a few election timeouts
after losing its leader), and a stream quiet for ``WATCH_IDLE_SECONDS`` (10 s;
``watch_idle_seconds`` of the client's v3 transport or v2 backend, see
:func:`link.etcd.testing.set_watch_idle`) is checked with a read that needs a
quorum (v3: a linearizable range; v2: a ``quorum=true`` GET), given
``read_timeout``.  So a change the majority makes reaches a TreeWatch within
``WATCH_IDLE_SECONDS + 3 * read_timeout + 2`` seconds (check, progress answer,
tree read again; the next stream opened within 2 s).
A failing stream is opened again after 0.1 s, doubling to 2 s, logged by the
``link.etcd.watch`` logger; a stream refused for its token (expired, or
forgotten by a restarted member) is opened again with a new token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import codec
from .backends.base import Event
from .backends.base import Watch as BackendWatch
from .backends.v3.watch import log_failure, retry_delay
from .errors import EtcdCompacted, EtcdError

if TYPE_CHECKING:
    from .middleware import EtcdMiddleware

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One key changed, as :meth:`EtcdMiddleware.watch` reports it.

    :attr type: ``'PUT'`` or ``'DELETE'``.
    :attr path: the key's path below the middleware's prefix, like the mapping's
        keys (``'/app/db/port'``; list items by position, ``'/l/00000000000000000002'``).
    :attr value: the new value, decoded like a read (``None`` for a DELETE).
    :attr revision: the store revision (v3) or index (v2) of the change; the
        events of one revision (one txn) come one after the other.
    :attr prev_value: the value before the change, decoded, when etcd still had it
        (v3); else ``None``.
    :attr key: the etcd key.
    """

    type: str
    path: str
    value: Any
    revision: int
    prev_value: Any = None
    key: str = ""


class Watch:
    """An open watch on a subtree: iterate for :class:`WatchEvent` s; ``cancel()``
    (from any thread) ends the iteration.  Survives reconnections and failover,
    resuming after the last revision seen.

    :raises EtcdCompacted: (while iterating) the revision to resume from is gone
        (v3: compacted; v2: out of the 1,000 events etcd keeps);
        ``compact_revision`` is the oldest revision still kept (v2: etcd's
        index then).  Read the subtree again and watch from there.
    :raises EtcdAuthError: (while iterating) etcd refused the watch, also with a
        new token.
    """

    def __init__(self, stream: BackendWatch, stem: str) -> None:
        self._stream = stream
        self._stem = stem

    def __iter__(self) -> Iterator[WatchEvent]:
        for event in self._stream:
            yield self._decode(event)

    def _decode(self, event: Event) -> WatchEvent:
        prev = None if event.prev_value is None else codec.decode_leaf(event.prev_value)
        return WatchEvent(
            event.type,
            event.key[len(self._stem) :] or "/",
            codec.decode_leaf(event.value) if event.type == "PUT" else None,
            event.revision,
            prev,
            event.key,
        )

    def cancel(self) -> None:
        """Stop the watch; a blocked iteration ends."""
        self._stream.cancel()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


#: ``callback(value, revision)``; return ``False`` to stop watching.
Callback = Callable[[Any, int], "bool | None"]


class TreeWatch:
    """Watch ``path`` (a leaf or a whole subtree) of ``client`` and call ``callback``.

    :param client: the middleware to read and watch through.
    :param path: the path to watch; it need not exist yet.
    :param callback: ``callback(value, revision)``, called first with the current
        value, then after every change; ``value`` is ``None`` while nothing is
        stored.  Exceptions it raises are logged and the watch goes on.
    :param start: start the watch thread now (default); else call :meth:`start`.

    A failed read or stream is retried after a growing pause (0.1 s doubling up
    to 2 s), each failure logged by the ``link.etcd.watch`` logger.
    :meth:`EtcdMiddleware.close` stops every TreeWatch of the client.

    :raises EtcdError: the first read failed (raised by :meth:`start`, in the
        caller's thread, so a misconfigured client fails loudly).
    """

    def __init__(
        self, client: EtcdMiddleware, path: str, callback: Callback, *, start: bool = True
    ) -> None:
        self.client = client
        self.path = path
        self.callback = callback
        self.revision = 0
        self._stopped = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        register = getattr(client, "_watching", None)
        if register is not None:  # client.close() stops the watch
            register(self)
        if start:
            self.start()

    def __repr__(self) -> str:
        return f"TreeWatch({self.path!r}, revision={self.revision}, running={self.running})"

    @property
    def running(self) -> bool:
        """True while the watch thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TreeWatch:
        """Read the current value, call the callback, then watch in a daemon thread."""
        if not self._deliver():
            return self
        self._thread = threading.Thread(
            target=self._run, name=f"link.etcd.watch {self.path}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop watching; waits up to ``timeout`` seconds for the thread to end."""
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> TreeWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _deliver(self) -> bool:
        """Read the subtree once and hand it to the callback; False means stop."""
        value, self.revision = self.client.snapshot(self.path, default=None)
        try:
            keep = self.callback(value, self.revision)
        except Exception:  # noqa: BLE001 - a broken user callback must not kill the watch
            _log.exception("TreeWatch callback for %r failed", self.path)
            return True
        if keep is False:
            self._stopped.set()
            return False
        return True

    def _run(self) -> None:
        failures = 0
        resync = False
        while not self._stopped.is_set():
            try:
                if resync and not self._deliver():
                    return
                resync = False
                if not self._follow():
                    return
                failures = 0
            except EtcdCompacted as exc:  # events were lost: read the tree again
                _log.warning("TreeWatch on %r: %s; reading the tree again", self.path, exc)
                resync = True
            except EtcdError as exc:
                failures += 1
                delay = retry_delay(failures)
                log_failure(self.path, failures, f"{type(exc).__name__}: {exc}", delay)
                self._stopped.wait(delay)

    def _follow(self) -> bool:
        """Follow one watch from the revision after the last read; False to stop."""
        stream = self.client.watch(self.path, start_revision=self.revision + 1)
        self._stream = stream
        try:
            if self._stopped.is_set():
                return False
            for event in stream:
                if self._stopped.is_set():
                    return False
                if event.revision <= self.revision:
                    continue  # already covered by the last read
                if not self._deliver():
                    return False
            return not self._stopped.is_set()
        finally:
            stream.cancel()
