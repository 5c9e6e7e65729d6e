"""etcd's primitives on whole trees: conditional writes, read-modify-write, several
paths at once, append, past revisions.  Each function takes the client first;
:class:`~link.etcd.middleware.EtcdMiddleware` offers them as methods.

On v3 each conditional write is **one txn** guarded by compares on what it read,
so it is atomic; a tree too large for one txn (``max_txn_ops`` operations,
``max_request_bytes`` bytes) is refused with :class:`EtcdInvalidTree` before
anything is written.

v2 (``api = v2``) guards one key per request (``prevExist``, ``prevValue``,
``prevIndex``) and has no multi-key transaction, so it does what one key can:

- :func:`create`: a leaf, atomic (``PUT prevExist=false``); a tree claims its
  directory atomically (``PUT dir=true prevExist=false``), then its contents are
  written: readers may see it partly written;
- :func:`compare_and_swap`: a scalar for a scalar (``PUT prevValue=``); a tree on
  either side raises :class:`EtcdUnsupported`;
- :func:`transform`: a leaf (``GET``, then ``PUT prevIndex=``, retried); a tree
  stored or returned raises :class:`EtcdUnsupported`;
- :func:`append`: etcd's own in-order keys (``POST``);
- :func:`update`: one replace per path;
- :func:`rollback`: :class:`EtcdUnsupported` (v2 keeps no past revisions);
- ``lease=`` raises :class:`EtcdUnsupported`; ``ttl=`` gives the nodes v2 TTLs.

Bad input raises :class:`EtcdInvalidTree` before any request on both APIs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import codec
from .backends.base import ABSENT, KeyValue
from .backends.v3 import guarded
from .errors import EtcdKeyNotFound, EtcdTxnTooLarge, EtcdUnsupported

if TYPE_CHECKING:
    from .backends.v2 import V2Backend
    from .backends.v3.guarded import Held
    from .middleware import EtcdMiddleware
    from .recipes.lease import Lease
    from .recipes.lock import Holder


class _Missing:
    """The type of :data:`MISSING`; its repr is what ``help()`` shows."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no default>"


#: The "no default given" marker of the methods that take a ``default``.
MISSING: Any = _Missing()


def _encode(client: EtcdMiddleware, value: Any, path: str) -> codec.Node:
    """``value`` encoded for ``client``'s API (v2 stores text only)."""
    return codec.encode(value, path, text_only=client._text_only)


def _stored(items: Sequence[KeyValue], key: str) -> Any:
    """The value ``items`` (a tree's key-values) hold at ``key``; ABSENT when none."""
    return codec.decode(items, key) if items else ABSENT


def _v2(client: EtcdMiddleware) -> V2Backend | None:
    """The v2 backend when the middleware uses the v2 API, else None (no request)."""
    if client.settings.api != "v2":
        return None
    from .backends.v2 import V2Backend

    backend = client.backend
    return backend if isinstance(backend, V2Backend) else None


def create(
    client: EtcdMiddleware,
    path: str,
    value: Any,
    *,
    ttl: float | None = None,
    lease: Lease | int | None = None,
) -> bool:
    """Store ``value`` at ``path`` only if nothing is stored there (v3: one read,
    then one txn guarded by it).

    v2: a leaf is one ``PUT prevExist=false`` (atomic).  A tree is one
    ``PUT dir=true prevExist=false`` (atomic: only one creator wins the
    directory), then its contents, pipelined as a replace writes them; readers
    may see the tree partly written until then.  An empty directory counts as
    something stored.  ``ttl`` gives the leaf, or the directory and every node
    below it, etcd's TTL of ``ceil(ttl)`` seconds.

    :returns: True when written; False when ``path`` holds something.
    :raises EtcdInvalidTree: bad path or value; its subclass EtcdTxnTooLarge: too
        large for one txn.
    :raises EtcdUnsupported: ``lease`` on v2.
    """
    key, ancestors = client._writable(path)
    node = _encode(client, value, path)
    v2 = _v2(client)
    if v2 is not None:
        client._lease_id(path, ttl, lease)  # checks ttl; v2 refuses leases
        return v2.create(key, node, ancestors, ttl=ttl)
    backend = client._v3(path, "create")
    lease_id = client._lease_id(path, ttl, lease)
    written, _ = backend.replace_if(key, ancestors, guarded.if_absent(node), lease=lease_id)
    return written


def compare_and_swap(client: EtcdMiddleware, path: str, expected: Any, new: Any) -> bool:
    """Store ``new`` at ``path`` only if it holds exactly ``expected`` now (a scalar
    or a whole tree, compared by value with exact types: ``1``, ``1.0``, ``True``
    and ``"1"`` differ; a list equals its items, whatever their positions).

    v2: ``expected`` and ``new`` must both be scalars (or ``{}``/``[]``, stored as
    one leaf): one ``PUT prevValue=<stored bytes of expected>`` (an empty string
    ``expected``: a ``GET``, then ``PUT prevIndex=``).

    :returns: True when swapped; False when ``path`` holds something else (or
        nothing).
    :raises EtcdInvalidTree: bad path or values; its subclass EtcdTxnTooLarge: too
        large for one txn.
    :raises EtcdUnsupported: on v2, a tree as ``expected`` or ``new`` (comparing
        or writing several keys at once needs a multi-key transaction).
    """
    key, ancestors = client._writable(path)
    v2 = _v2(client)
    if v2 is not None:
        old, swapped = _encode(client, expected, path), _encode(client, new, path)
        if not isinstance(old, bytes) or not isinstance(swapped, bytes):
            raise EtcdUnsupported(
                "compare_and_swap of a tree needs a multi-key transaction, which v2 does "
                "not have: give scalars, or use api = v3",
                endpoints=v2.endpoints,
                key=path,
            )
        return v2.compare_and_swap(key, old, swapped)
    decide = guarded.if_equal(key, _encode(client, expected, path), _encode(client, new, path))
    written, _ = client._v3(path, "compare_and_swap").replace_if(key, ancestors, decide)
    return written


def transform(
    client: EtcdMiddleware,
    path: str,
    fn: Callable[[Any], Any],
    *,
    default: Any = MISSING,
    if_held: Holder | Held | None = None,
) -> Any:
    """Read the tree at ``path``, store ``fn(tree)`` guarded by that read, and read
    again and call ``fn`` again when another writer got in between (with jittered
    backoff, up to 64 attempts): no update is lost.

    v2: a leaf only: one ``GET`` (its ``modifiedIndex``), then one
    ``PUT prevIndex=`` (``prevExist=false`` when nothing is stored), the same
    retries on a conflict.

    :param fn: the new value from the old one; called once per attempt.
    :param default: what ``fn`` gets when nothing is stored; without it, a
        missing path raises :class:`EtcdKeyNotFound`.
    :param if_held: a lock or election (or its ``guard``): store only while it
        holds the lock, checked in the same txns (v3; see ``docs/coordination.md``).
    :returns: the value stored (what ``fn`` returned).
    :raises EtcdLockLost: ``if_held`` does not hold its lock (nothing written).
    :raises EtcdCompareFailed: other writers kept winning for 64 attempts.
    :raises EtcdInvalidTree: ``fn`` returned something that cannot be stored,
        or it needs more than one txn (nothing written).
    :raises EtcdUnsupported: on v2, ``path`` holds a tree or ``fn`` returned one
        (nothing written).
    """
    key, ancestors = client._writable(path)
    held = None if if_held is None else client._held(path, if_held)
    v2 = _v2(client)
    if v2 is not None:
        return _transform_v2(v2, path, key, ancestors, fn, default)
    result: list[Any] = []

    def decide(items: list[KeyValue]) -> Any:
        old = _stored(items, key)
        if old is ABSENT:
            if default is MISSING:
                raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
            old = default
        value = fn(old)
        result[:] = [value]
        return _encode(client, value, path)

    backend = client._v3(path, "transform")
    if held is None:
        backend.replace_if(key, ancestors, decide)
    else:
        backend.run(guarded.replace_if(key, ancestors, backend.limits, decide, held=held), key)
    return result[0]


def _transform_v2(
    backend: V2Backend,
    path: str,
    key: str,
    ancestors: Sequence[str],
    fn: Callable[[Any], Any],
    default: Any,
) -> Any:
    """:func:`transform` of a leaf on v2 (see :meth:`.V2Backend.transform_leaf`)."""
    result: list[Any] = []

    def decide(text: str | None) -> bytes:
        if text is None:
            if default is MISSING:
                raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
            old = default
        else:
            old = codec.decode_text(text)
        value = fn(old)
        node = codec.encode(value, path, text_only=True)
        if not isinstance(node, bytes):
            raise EtcdUnsupported(
                "transform's function returned a tree: writing it guarded by the read "
                "needs a multi-key transaction, which v2 does not have (use api = v3)",
                endpoints=backend.endpoints,
                key=path,
            )
        result[:] = [value]
        return node

    backend.transform_leaf(key, ancestors, decide)
    return result[0]


def update(
    client: EtcdMiddleware,
    other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    /,
    **kw: Any,
) -> None:
    """``MutableMapping.update``: store several paths, validated first (a bad value
    anywhere writes nothing).

    v3: one txn guarded by one read of every path when they fit in one (so all
    or none are written); otherwise, or when one path is below another, one
    replace per path in order, each with its own guarantees.  v2: one replace
    per path.

    :raises EtcdInvalidTree: a bad path or value (nothing written).
    """
    pairs = list(other.items() if isinstance(other, Mapping) else other) + list(kw.items())
    entries = []
    for path, value in pairs:
        key, ancestors = client._writable(path)
        entries.append((key, _encode(client, value, path), ancestors))
    keys = [key for key, _, _ in entries]
    nested = any(a != b and b.startswith(a + "/") for a in keys for b in keys)
    if len(set(keys)) == len(keys) and not nested and entries and client.settings.api == "v3":
        try:
            client._v3("/", "update").replace_many(entries)
            return
        except EtcdTxnTooLarge:
            pass
    for key, node, ancestors in entries:
        client.backend.replace(key, node, ancestors)


def append(client: EtcdMiddleware, path: str, value: Any, *, ttl: float | None = None) -> str:
    """Add ``value`` (any tree) as the last item of the list at ``path`` (a missing
    path becomes a list).  Concurrent appenders never overwrite each other, and
    ``self[path]`` gives the items in the order their appends succeeded.

    v3: one ``keys_only`` read of the last position, then one txn that writes
    the item at the next position only if nothing is there yet.

    v2: one ``GET`` of the list (one level), then one ``POST``: etcd's in-order
    key is the position.  A tree item is a ``POST dir=true`` and then its
    contents (readers may see the item partly written).  The ``GET`` grows with
    the list's length.

    :param ttl: seconds the item lives (v3: a lease for it; v2: etcd's TTL of
        ``ceil(ttl)`` seconds on the item and every node below it).
    :returns: the new item's path (``f"{path}/{position}"``).
    :raises EtcdInvalidTree: ``path`` holds a dict or a leaf, or a bad value.
    """
    key, ancestors = client._writable(path)
    node = _encode(client, value, path)
    v2 = _v2(client)
    if v2 is not None:
        client._lease_id(path, ttl, None)  # checks ttl
        return f"{path.rstrip('/')}/{v2.append(key, node, ancestors, ttl=ttl)}"
    backend = client._v3(path, "append")
    lease_id = client._lease_id(path, ttl, None)
    position = backend.append(key, node, ancestors, lease=lease_id)
    return f"{path.rstrip('/')}/{position}"


def rollback(client: EtcdMiddleware, path: str, revision: int) -> int:
    """Store the tree ``path`` held at ``revision`` again (nothing then: delete it).

    One txn guarded by its read when it fits (atomic); else a plain replace.

    :returns: the revision of the write.
    :raises EtcdCompacted: ``revision`` was compacted away.
    :raises EtcdUnsupported: on v2, which keeps no past revisions.
    """
    key, ancestors = client._writable(path)
    backend = client._v3(path, "rollback")
    old, _ = backend.read_tree(key, revision)
    if old is ABSENT:
        backend.delete(key)
        return backend.read_tree(key)[1]
    node = _encode(client, old, path)
    try:
        _, written = backend.replace_if(key, ancestors, lambda items: node)
        return written
    except EtcdTxnTooLarge:
        pass
    backend.replace(key, node, ancestors)
    return backend.read_tree(key)[1]


__all__ = ["append", "compare_and_swap", "create", "rollback", "transform", "update"]
