"""The history of a subtree: every version etcd still remembers, rebuilt from its
watch history (v3).

etcd keeps every revision until it is compacted; a watch that starts at a past
revision replays the events since then, in revision order.  :func:`history`
reads the tree just before the first revision asked for, then applies the
replayed events one revision at a time, giving the whole tree after each.  It
ends at the revision etcd was at when it was called: at the first event past it,
or, when none comes, once etcd has sent nothing for :data:`QUIET_SECONDS` and
the rebuilt tree equals a read of the tree at that revision (etcd 3.5 cannot
say when a watch has caught up; the read checks that nothing is missing, short of
a pause mid-replay at a version equal to the current tree).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import codec
from .backends.base import ABSENT, Event
from .backends.v3 import engine
from .backends.v3.protocol import Range
from .errors import EtcdCompacted, EtcdError
from .paths import encode_key

if TYPE_CHECKING:
    from .backends.v3 import V3Backend
    from .middleware import EtcdMiddleware

#: Seconds without an event after which the replay is checked for completeness.
QUIET_SECONDS = 0.5
#: Checks before the replay is declared incomplete.
QUIET_CHECKS = 20


def oldest_revision(backend: V3Backend, key: str, head: int) -> int:
    """The oldest revision etcd can still read, at most ``head``: a binary search
    of ``count_only`` reads of ``key`` (about ``log2(head)`` small requests; one
    when nothing was compacted)."""

    def readable(revision: int) -> bool:
        try:
            backend.transport.call(Range(encode_key(key), revision=revision, count_only=True))
        except EtcdCompacted:
            return False
        return True

    low, high = 1, head
    while low < high:
        middle = (low + high) // 2
        if readable(middle):
            high = middle
        else:
            low = middle + 1
    return low


def history(
    client: EtcdMiddleware, path: str, start_revision: int | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield ``(revision, value)`` for each revision that changed the tree at
    ``path``, from ``start_revision`` to now; ``value`` is the whole tree after that
    revision (``None`` when nothing was stored).  Without ``start_revision``, the
    first item is the tree at the oldest revision etcd keeps (when it held
    something), then every change after it; so does a ``start_revision`` equal to
    the oldest kept revision (the one before it is gone).

    Costs: a read of now, a few ``count_only`` reads to find the oldest revision
    kept, a read at ``start_revision - 1``, one watch stream.

    :raises EtcdCompacted: ``start_revision`` is older than etcd's compaction
        (``compact_revision`` says the oldest kept).
    :raises EtcdUnsupported: on v2.
    :raises EtcdError: the replay stopped short of now (etcd kept sending nothing
        and the rebuilt tree did not match a read).
    """
    backend = client._v3(path, "history")
    key = client.key(path)
    now, head = backend.read_tree(key)
    now = None if now is ABSENT else now
    oldest = oldest_revision(backend, key, head)
    if start_revision is not None and start_revision < oldest:
        raise EtcdCompacted(
            f"revision {start_revision} was compacted; the oldest kept is {oldest}",
            compact_revision=oldest,
            key=path,
        )
    if start_revision is None or (start_revision == oldest and oldest > 1):
        base = oldest  # the revision before it is gone: start from the tree at it
    else:
        base = start_revision - 1
    leaves: dict[str, bytes] = {}
    if base > 0:
        before = backend.run(engine.snapshot(key, pairs=True, revision=base), key)
        leaves = dict(engine.pairs_of(before))
        if base == oldest and oldest > 1 and leaves:
            yield base, _value(leaves, key)
    if base >= head:
        return
    yield from _replay(backend, key, leaves, base + 1, head, now)


def _replay(
    backend: V3Backend, key: str, leaves: dict[str, bytes], start: int, head: int, now: Any
) -> Iterator[tuple[int, Any]]:
    """Apply the watch's events to ``leaves`` revision by revision, up to ``head``."""
    watch = backend.watch(key, start)
    events: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()

    def pump() -> None:
        try:
            for event in watch:
                events.put(event)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
            events.put(exc)
        events.put(None)

    thread = threading.Thread(target=pump, name="link.etcd.history", daemon=True)
    thread.start()
    pending = 0  # the revision whose events are being applied
    quiet = 0
    try:
        while True:
            try:
                event = events.get(timeout=QUIET_SECONDS)
            except queue.Empty:
                if _value(leaves, key) == now:  # caught up (or nothing changed at all)
                    if pending:
                        yield pending, _value(leaves, key)
                    return
                quiet += 1
                if quiet >= QUIET_CHECKS:
                    raise EtcdError(
                        f"the history of {key!r} stopped short of revision {head}",
                        key=key,
                    ) from None
                continue
            if event is None:
                raise EtcdError(f"the watch of {key!r} ended", key=key)
            if isinstance(event, BaseException):
                raise event
            quiet = 0
            if event.revision > head:
                break
            if pending and event.revision != pending:
                yield pending, _value(leaves, key)
            pending = event.revision
            if event.type == "PUT":
                leaves[event.key] = event.value
            else:
                leaves.pop(event.key, None)
        if pending:
            yield pending, _value(leaves, key)
    finally:
        watch.cancel()
        thread.join(5)


def _value(leaves: dict[str, bytes], key: str) -> Any:
    """The tree ``leaves`` store at ``key``: ``None`` when empty (a missing path)."""
    if not leaves:
        return None
    value = codec.decode(leaves.items(), key)
    return None if value is ABSENT else value
