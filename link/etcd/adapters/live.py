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
4. recovers: while the configuration is stale (booted from the cache) or after
   the watch failed, it tries to read every ``retry_seconds`` until etcd
   answers, then replaces the stale configuration with the current one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..errors import EtcdError, EtcdSettingsError
from .layers import LayeredTree, Reading

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between read attempts while etcd cannot be reached.
RETRY_SECONDS = 1.0


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
    ) -> None:
        self.tree = tree
        self._build = build
        self._changes = changes
        self.on_change = on_change
        self.on_error = on_error
        self.retry_seconds = retry_seconds
        self.current: T | None = None
        self.reading: Reading | None = None
        self._seen = 0  # the newest revision read, valid or not
        self._reported: tuple[str, ...] = ()
        self._stopped = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"LiveConfig({self.tree.paths!r}, revision={self.revision}, stale={self.stale}, "
            f"running={self.running})"
        )

    @property
    def stale(self) -> bool:
        """True while the configuration comes from the cache file, not from etcd."""
        return self.reading is not None and self.reading.stale

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
        self._notify(None, value, self._changes(None, value))
        self._thread = threading.Thread(
            target=self._run, name=f"link.etcd config {self.tree.paths}", daemon=True
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

    def __enter__(self) -> LiveConfig[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the watch thread ---------------------------------------------------

    def _run(self) -> None:
        must_read = self.stale
        while not self._stopped.is_set():
            if must_read:
                try:
                    self.reload()
                except EtcdError as exc:
                    _log.debug("configuration %s: etcd not back yet: %s", self.tree.paths, exc)
                    self._stopped.wait(self.retry_seconds)
                    continue
                must_read = False
            try:
                self._follow()
            except EtcdError:
                _log.warning("watch of %s failed; reading again", self.tree.paths, exc_info=True)
                must_read = True
                self._stopped.wait(self.retry_seconds)

    def _follow(self) -> None:
        stream = self.tree.client.watch(self.tree.watch_path, start_revision=self._seen + 1)
        self._stream = stream
        try:
            if self._stopped.is_set():
                return
            for event in stream:
                if self._stopped.is_set():
                    return
                if event.revision <= self._seen or not self.tree.covers(event.path):
                    continue  # covered by the last read, or outside every layer
                self.reload()
        finally:
            stream.cancel()

    def reload(self) -> bool:
        """Read the layers now; apply them if they are valid.

        :returns: True when a new configuration was applied.
        :raises EtcdError: the read failed (the configuration in use is kept).
        """
        reading = self.tree.read()
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
