"""LiveConfig: a configuration kept current from etcd, validated, last-known-good.

Both adapters run one of these per configuration (a pydantic settings class, a
b3j0f conf path).  It

1. boots: reads the layers (or, etcd being unreachable, the cache file: then
   ``stale`` is True), builds the configuration, calls ``on_change(None, new,
   changed)``;
2. watches: **one watch** on the layers' deepest common path (a v3 ``Watch``
   stream, v2 long polls).  An event outside every layer is skipped without a
   read; an event inside reads all layers again (one txn) and skips the events
   that read already covers, so a txn that changes many keys gives one reload;
3. validates: each new reading is built into a configuration first; only a
   valid one replaces the current one and reaches ``on_change(old, new,
   changed)``; an invalid one keeps the last good configuration and is reported
   once (``on_error(InvalidConfiguration)`` and a log warning naming the etcd
   keys, values and errors); the next valid change is applied;
4. notices outages: the layers are read again when ``check_seconds`` (10 s)
   passed without a read; a read that fails makes the configuration **stale**
   (``stale`` True, ``stale_since`` the time of the last successful read; one
   warning naming the endpoints tried), and it is kept.  A boot from the cache
   file is stale too (``stale_since``: when the file was saved);
5. recovers: while stale, or after the watch stream failed, it reads every
   ``retry_seconds`` until etcd answers, then uses the current configuration
   (``on_change`` when it differs, and always after a boot from the cache) and
   is no longer stale (one INFO line).

Stale is declared at the first failed read, with no grace period: an outage
shorter than the time to the next read goes unseen, and the watch stream
(which reconnects by itself) still delivers what changed meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import EtcdError, EtcdSettingsError
from .layers import LayeredTree, Reading

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between read attempts while etcd cannot be reached.
RETRY_SECONDS = 1.0
#: Seconds without a read of the layers after which they are read (while etcd
#: answers and nothing changes): the longest an outage goes unnoticed, plus the
#: read's timeouts.  The watch streams check a quiet stream as often (10 s).
CHECK_SECONDS = 10.0

_STOP: Any = object()  # in the inbox: stop() wakes the watch thread
_END: Any = object()  # in the inbox: a stream's iteration ended


class InvalidConfiguration(EtcdSettingsError):
    """A configuration read from etcd failed validation; the last good one is kept.

    :attr revision: the revision of the reading that failed.
    :attr problems: one line per invalid value, naming its etcd key, the value
        and the validation error.
    """

    def __init__(self, message: str, *, revision: int, problems: list[str]) -> None:
        super().__init__(message)
        self.revision = revision
        self.problems = problems


#: ``on_change(old, new, changed)``: ``old`` is ``None`` on the first call;
#: ``changed`` lists the paths (``'db.port'``) whose value differs.
OnChange = Callable[[Any, Any, list[str]], Any]
#: ``on_error(error)``, with an :class:`InvalidConfiguration`.
OnError = Callable[[InvalidConfiguration], Any]


class LiveConfig(Generic[T]):
    """A configuration built from layered etcd subtrees and kept current.

    :param tree: the layers to read and watch (with their cache file, if any).
    :param build: ``build(reading)``: the configuration, or raises
        :class:`InvalidConfiguration`.
    :param changes: ``changes(old, new)``: the paths whose value differs.
    :param on_change: called in the watch thread after each applied change.
    :param on_error: called in the watch thread once per distinct invalid change.
    :param retry_seconds: seconds between read attempts while etcd is unreachable.
    :param check_seconds: while etcd answers, the layers are read at least this
        often (seconds; one read, v3: one ``txn``, when no change arrived
        meanwhile), so that an outage is noticed within ``check_seconds`` plus
        the read's own timeouts (``read_timeout`` per endpoint) even when no
        change is made.
    :raises ValueError: ``retry_seconds`` or ``check_seconds`` is not positive.
    """

    def __init__(
        self,
        tree: LayeredTree,
        build: Callable[[Reading], T],
        changes: Callable[[T | None, T], list[str]],
        on_change: OnChange | None = None,
        on_error: OnError | None = None,
        *,
        retry_seconds: float = RETRY_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        for name, seconds in (("retry_seconds", retry_seconds), ("check_seconds", check_seconds)):
            if not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")
        self.tree = tree
        self._build = build
        self._changes = changes
        self.on_change = on_change
        self.on_error = on_error
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.current: T | None = None
        self.reading: Reading | None = None
        self._seen = 0  # the newest revision read, valid or not
        self._reported: tuple[str, ...] = ()
        self._read_at = 0.0  # seconds since the epoch of the last successful read
        self._failing = False  # the last read of the layers failed
        self._stopped = threading.Event()
        # (stream, event / the error that ended it / _END), or (None, _STOP)
        self._inbox: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"LiveConfig({self.tree.paths!r}, revision={self.revision}, stale={self.stale}, "
            f"running={self.running})"
        )

    @property
    def stale(self) -> bool:
        """True while nothing confirms that the configuration in use is etcd's: it
        came from the cache file (etcd down at start-up) and no read of etcd replaced
        it yet, or the last read of the layers failed (etcd down or unreachable
        later; the configuration in use is kept).  False again as soon as a read
        succeeds.  See :attr:`stale_since`."""
        return self.stale_since is not None

    @property
    def stale_since(self) -> float | None:
        """``None`` while not :attr:`stale`; else when the configuration in use was
        last read from etcd, in seconds since the epoch: the cache file's
        ``saved_at`` after a boot from it, else the last successful read before the
        outage (at most ``check_seconds`` before it was noticed)."""
        reading = self.reading
        if reading is not None and reading.stale:
            return reading.saved_at
        return self._read_at if self._failing else None

    @property
    def revision(self) -> int:
        """The revision (v3) or index (v2) of the configuration in use (0: none yet)."""
        return 0 if self.reading is None else self.reading.revision

    @property
    def running(self) -> bool:
        """True while the watch thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- life cycle ---------------------------------------------------------

    def start(self, reading: Reading | None = None) -> LiveConfig[T]:
        """Boot (``reading``, else :meth:`LayeredTree.boot`), build, call ``on_change``
        and start watching in a daemon thread.

        :raises InvalidConfiguration: the configuration at start-up is invalid
            (there is no last good one to keep).
        :raises EtcdConnectionFailed: etcd cannot be reached and there is no cache.
        :raises CacheFileError: etcd cannot be reached and the cache is unusable.
        """
        reading = reading if reading is not None else self.tree.boot()
        value = self._build(reading)
        self.reading, self.current, self._seen = reading, value, reading.revision
        self._failing = reading.stale  # the boot's read failed (already logged)
        self._read_at = reading.saved_at if reading.saved_at is not None else time.time()
        self._notify(None, value, self._changes(None, value))
        self._thread = threading.Thread(
            target=self._run, name=f"link.etcd config {self.tree.paths}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop reading and watching; waits up to ``timeout`` seconds for the watch
        thread to end (a read in progress ends first: up to ``read_timeout`` per
        endpoint)."""
        self._stopped.set()
        self._inbox.put((None, _STOP))  # wakes the watch thread
        self._close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> LiveConfig[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the watch thread ---------------------------------------------------
    #
    # One thread owns the state: it takes the stream's events from the inbox
    # (a second, "pump" thread iterates the stream, which blocks), and reads the
    # layers when an event inside them arrives, when ``check_seconds`` passed
    # without a read, and every ``retry_seconds`` while reads fail.  The stream
    # reconnects by itself; it is opened again from the last revision read only
    # after it raised (EtcdCompacted, ...), once a read succeeded.

    def _run(self) -> None:
        due = time.monotonic() if self._failing else time.monotonic() + self.check_seconds
        try:
            while not self._stopped.is_set():
                if self._stream is None and not self._failing:
                    self._open()
                wait = due - time.monotonic()
                if wait > 0:
                    if self._take(wait):
                        due = time.monotonic()  # a change inside the layers: read now
                    continue
                try:
                    self.reload()
                except EtcdError:
                    due = time.monotonic() + self.retry_seconds
                else:
                    due = time.monotonic() + self.check_seconds
        finally:
            self._close()

    def _open(self) -> None:
        """Watch the layers from the revision after the last one read."""
        stream = self.tree.client.watch(self.tree.watch_path, start_revision=self._seen + 1)
        self._stream = stream
        threading.Thread(
            target=self._pump,
            args=(stream,),
            name=f"link.etcd config stream {self.tree.paths}",
            daemon=True,
        ).start()
        if self._stopped.is_set():
            self._close()

    def _pump(self, stream: Any) -> None:
        """Put each event of ``stream`` in the inbox, then the error that ended it,
        or ``_END``."""
        try:
            for event in stream:
                self._inbox.put((stream, event))
        except Exception as exc:  # noqa: BLE001 - handed to the watch thread
            self._inbox.put((stream, exc))
        else:
            self._inbox.put((stream, _END))

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.cancel()

    def _take(self, wait: float) -> bool:
        """Wait up to ``wait`` seconds for the stream; True when the layers must be
        read now (a change inside them, or the stream ended)."""
        try:
            stream, item = self._inbox.get(timeout=wait)
        except queue.Empty:
            return False
        if item is _STOP or stream is not self._stream:
            return False  # stopping, or left over from a closed stream
        if item is _END or isinstance(item, EtcdError):
            if item is not _END:
                _log.warning("watch of %s failed; reading again: %s", self.tree.paths, item)
            self._close()
            return True
        if isinstance(item, BaseException):
            raise item
        return bool(item.revision > self._seen and self.tree.covers(item.path))

    def reload(self) -> bool:
        """Read the layers now; apply them if they are valid.

        A failed read makes the configuration :attr:`stale` (logged once as a
        warning); a successful one ends that (logged at INFO).

        :returns: True when a new configuration was applied.
        :raises EtcdError: the read failed (the configuration in use is kept).
        """
        try:
            reading = self.tree.read()
        except EtcdError as exc:
            self._unconfirmed(exc)
            raise
        self._confirmed(reading)
        previous = self.reading
        if previous is not None and previous.stale:
            self._seen = reading.revision  # the cache's revision may be from another cluster
        else:
            self._seen = max(self._seen, reading.revision)
        if (
            previous is not None
            and not previous.stale
            and not diff_paths(previous.tree, reading.tree)
        ):
            self.reading = reading  # the same values: nothing to rebuild
            return False
        try:
            value = self._build(reading)
        except InvalidConfiguration as exc:
            self._report(exc)
            return False
        old, self.current, self.reading = self.current, value, reading
        self._reported = ()
        changed = self._changes(old, value)
        if changed or (previous is not None and previous.stale):
            self._notify(old, value, changed)
        return True

    def _unconfirmed(self, error: EtcdError) -> None:
        """A read failed: stale from now on, said once."""
        if self._failing:
            _log.debug("configuration %s: etcd not back yet: %s", self.tree.paths, error)
            return
        self._failing = True
        _log.warning(
            "configuration %s: etcd cannot be reached (%s); keeping revision %d, stale "
            "until etcd answers (read again every %.3g s)",
            self.tree.paths,
            error,
            self.revision,
            self.retry_seconds,
        )

    def _confirmed(self, reading: Reading) -> None:
        """A read succeeded: current again (said once) when it was stale."""
        since = self.stale_since
        self._read_at = time.time()
        if self._failing:
            self._failing = False
            _log.info(
                "configuration %s: etcd answers again (revision %d), configuration read "
                "%.1f s after the last confirmed one",
                self.tree.paths,
                reading.revision,
                self._read_at - (since if since is not None else self._read_at),
            )

    def _report(self, error: InvalidConfiguration) -> None:
        problems = tuple(error.problems) or (str(error),)
        if problems == self._reported:
            return  # reported once
        self._reported = problems
        _log.warning(
            "configuration %s at revision %d is invalid, keeping revision %d: %s",
            self.tree.paths,
            error.revision,
            self.revision,
            "; ".join(problems),
        )
        if self.on_error is not None:
            try:
                self.on_error(error)
            except Exception:  # noqa: BLE001 - a user callback may raise anything; logged
                _log.exception("on_error callback of %s failed", self.tree.paths)

    def _notify(self, old: T | None, new: T, changed: list[str]) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(old, new, changed)
        except Exception:  # noqa: BLE001 - a broken user callback must not kill the watch
            _log.exception("on_change callback of %s failed", self.tree.paths)


def diff_paths(old: Any, new: Any, at: str = "") -> list[str]:
    """The dotted paths (``'db.port'``) where two trees of dicts differ, sorted; a
    list or a leaf is compared whole.  ``old`` ``None``: every leaf of ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for name in sorted(old.keys() | new.keys(), key=str):
            where = f"{at}.{name}" if at else str(name)
            out += diff_paths(old.get(name, _MISSING), new.get(name, _MISSING), where)
        return out
    if old is None and at == "":
        return diff_paths({}, new)
    if old is _MISSING and isinstance(new, dict) and new:
        return diff_paths({}, new, at)
    if new is _MISSING and isinstance(old, dict) and old:
        return diff_paths(old, {}, at)
    if type(old) is type(new) and old == new:
        return []
    return [at]


_MISSING: Any = object()


def stale_since(live: LiveConfig[Any] | None, reading: Reading | None) -> float | None:
    """:attr:`LiveConfig.stale_since` of ``live`` when there is one (watching), else
    of ``reading`` alone: ``saved_at`` when it came from the cache file, else ``None``."""
    if live is not None and live.reading is not None:
        return live.stale_since
    return reading.saved_at if reading is not None and reading.stale else None
