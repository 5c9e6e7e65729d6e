"""EtcdMiddleware: a ``MutableMapping`` of paths to Python trees stored in etcd."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import codec, primitives
from .backends import Backend, open_backend
from .backends.base import ABSENT
from .backends.v3 import V3Backend, guarded
from .errors import EtcdInvalidTree, EtcdKeyNotFound, EtcdUnsupported
from .paths import ancestor_keys, join_key, normalize_prefix, split_path
from .settings import EtcdSettings, load_settings

if TYPE_CHECKING:
    from .aio.lease import AsyncLease
    from .backends.v3.guarded import Held
    from .recipes.election import Election
    from .recipes.lease import Lease
    from .recipes.lock import Holder, Lock
    from .watch import TreeWatch, Watch

_MISSING: Any = primitives.MISSING
_W = TypeVar("_W")  # a Watch or TreeWatch: EtcdMiddleware.close() stops it


class EtcdMiddleware(MutableMapping[str, Any]):
    """A dictionary of trees over etcd (v3 API by default, v2 with ``api='v2'``).

    Keys are paths (``'/app/db'`` and ``'app/db'`` name the same node) below the
    ``prefix`` setting; values are Python trees: a ``dict`` is a directory, a
    ``list``/``tuple`` ordered children, ``str``/``int``/``float``/``bool``/``None``
    a leaf.  Reading gives back exactly what was written (tuples come back as
    lists).  See ``docs/storage-format.md`` for the keys and values in etcd.

    No connection is opened until the first operation.  One instance may be
    shared by several threads.

    :param settings: the settings to use; when ``None`` they are loaded with
        :func:`link.etcd.settings.load_settings` (``middleware.conf`` files,
        ``LINK_ETCD_*`` environment variables, ``uri``, then ``overrides``).
    :param uri: an ``etcd://`` URI (only when ``settings`` is ``None``).
    :param overrides: any :class:`EtcdSettings` field (``host``, ``endpoints``,
        ``api``, ``prefix``, ``read_timeout``, …).
    :raises EtcdSettingsError: a setting is unknown or has a bad value.
    """

    def __init__(
        self, settings: EtcdSettings | None = None, *, uri: str | None = None, **overrides: Any
    ) -> None:
        if settings is None:
            settings = load_settings(uri=uri, **overrides)
        elif uri is not None or overrides:
            settings = settings.replace(**_uri_fields(uri), **overrides)
        self.settings = settings
        self._stem = normalize_prefix(settings.prefix)
        # v2 keys and values are UTF-8 text: refuse the rest before any request
        self._text_only = settings.api == "v2"
        self._backend: Backend | None = None
        self._lock = threading.Lock()
        self._watches: weakref.WeakSet[Any] = weakref.WeakSet()  # stopped by close()

    @classmethod
    def from_uri(cls, uri: str, **overrides: Any) -> EtcdMiddleware:
        """Build a middleware from ``etcd://[user:password@]host[:port][,host2...][/prefix][?k=v]``.

        ``etcds://`` selects TLS; query parameters are settings (``api=v2``,
        ``ca_cert=/path``, ``read_timeout=3``); ``overrides`` win over the URI.
        """
        return cls(uri=uri, **overrides)

    def __repr__(self) -> str:
        s = self.settings
        return f"EtcdMiddleware(api={s.api!r}, endpoints={s.urls!r}, prefix={s.prefix!r})"

    @property
    def backend(self) -> Backend:
        """The backend for ``settings.api``, created on first use (no request is sent)."""
        backend = self._backend
        if backend is not None:
            return backend
        with self._lock:
            if self._backend is None:
                self._backend = open_backend(self.settings)
            return self._backend

    def close(self) -> None:
        """Stop the client's watches (:meth:`watch` and :meth:`watch_tree`, their
        threads joined, up to 5 s each) and close connections; the middleware
        reconnects if used again."""
        for watch in list(self._watches):
            watch.stop() if hasattr(watch, "stop") else watch.cancel()
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> EtcdMiddleware:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- paths -------------------------------------------------------------

    def key(self, path: str) -> str:
        """The etcd key that ``path`` names (``'/app'`` → ``'/myprefix/app'``).

        :raises EtcdInvalidTree: bad path (see :func:`link.etcd.paths.split_path`).
        """
        return join_key(self._stem, split_path(path, text_only=self._text_only))

    def _writable(self, path: str) -> tuple[str, list[str]]:
        segments = split_path(path, text_only=self._text_only)
        if not segments:
            raise EtcdInvalidTree(
                "the root cannot be replaced or deleted as a value; use clear() or a path below it",
                key=path,
            )
        return join_key(self._stem, segments), ancestor_keys(self._stem, segments)

    # -- reading -----------------------------------------------------------

    def __getitem__(self, path: str) -> Any:
        """Read the value at ``path``: a scalar for a leaf, the whole tree for a directory.

        One request on v3 (a ``range`` of the key and the keys below it; more
        ``range``s, pinned to the first one's revision, only past 100,000 keys),
        one recursive ``GET`` on v2.

        :raises EtcdKeyNotFound: nothing is stored at ``path`` (a ``KeyError``).
        :raises EtcdConnectionFailed: no endpoint answered (each waited for
            ``read_timeout`` seconds), naming every endpoint tried.
        """
        value, _ = self.backend.read_tree(self.key(path))
        if value is ABSENT:
            raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
        return value

    def get(self, path: str, default: Any = None) -> Any:
        """``self[path]``, or ``default`` when nothing is stored there.

        Connection errors are raised, never turned into ``default``.
        """
        try:
            return self[path]
        except EtcdKeyNotFound:
            return default

    def __contains__(self, path: object) -> bool:
        """True when ``path`` is a leaf or a directory (v3: one ``count_only`` txn)."""
        if not isinstance(path, str):
            return False
        return self.backend.exists(self.key(path))

    def children(self, path: str = "/") -> list[str]:
        """Names of the direct children of ``path``, sorted, without reading values.

        Names are key segments (as they appear in etcd): ``f'{path}/{name}'`` is a
        path to the child.  A leaf or a missing path has no children (``[]``).
        v3 reads the subtree's keys (``keys_only``); v2 reads one directory level.
        """
        return self.backend.children(self.key(path))

    def __iter__(self) -> Iterator[str]:
        """The root's direct children as ``'/name'`` paths."""
        return iter(["/" + name for name in self.children("/")])

    def __len__(self) -> int:
        """Number of direct children of the root."""
        return len(self.children("/"))

    # -- writing -----------------------------------------------------------

    def __setitem__(self, path: str, value: Any) -> None:
        """Replace whatever is at ``path`` with ``value``: afterwards ``self[path] == value``
        and no key of the previous subtree survives.

        The value is validated and encoded before any request.  v3: a scalar is one
        ``txn`` with no read (put the leaf, delete the keys below it and any leaf at
        its ancestors); for a tree, only the keys that change are sent, in ``txn``s
        of at most ``max_txn_ops`` operations and ``max_request_bytes`` bytes,
        guarded by compares on the mod revisions of the subtree; atomic when one
        ``txn`` suffices.  v2: not atomic (no transactions).

        :raises EtcdInvalidTree: bad path or value (nothing is written).
        :raises EtcdCompareFailed: concurrent writers kept changing the subtree.
        :raises EtcdPartialWrite: a multi-request write stopped part way.
        :raises EtcdConnectionFailed: no endpoint answered.
        """
        key, ancestors = self._writable(path)
        text_only = self._text_only
        if value.__class__ in codec.LEAVES:  # a leaf: few objects, nothing to pause for
            self.backend.replace(key, codec.encode(value, path, text_only=text_only), ancestors)
            return
        with codec.gc_paused():  # encoding a large tree makes many objects, no cycles
            node = codec.encode(value, path, text_only=text_only)
            self.backend.replace(key, node, ancestors)

    def set(
        self,
        path: str,
        value: Any,
        *,
        ttl: float | None = None,
        lease: Lease | int | None = None,
        if_revision: int | None = None,
        if_held: Holder | Held | None = None,
    ) -> None:
        """``self[path] = value``, with options.

        :param ttl: seconds the tree lives: v3 grants a lease of ``ceil(ttl)``
            seconds for this write (``LeaseGrant``) and attaches every key to it;
            v2 gives the nodes a TTL.
        :param lease: a :class:`~link.etcd.recipes.lease.Lease` (or its id) every
            key of the tree is attached to (v3): the tree is deleted when the lease
            ends.  Not with ``ttl``.
        :param if_revision: write only if nothing at or below ``path`` was created,
            changed or deleted after this revision (from :meth:`snapshot`); the
            check and the write are one txn (v3).
        :param if_held: a :class:`~link.etcd.recipes.lock.Lock`, an
            :class:`~link.etcd.recipes.election.Election` (or their ``guard``):
            write only while it still holds the lock or leadership, checked by a
            compare on its key's create revision in the same txn as the write (v3;
            the write must fit one txn).
        :raises EtcdCompareFailed: ``if_revision`` was given and the tree changed
            (nothing is written).
        :raises EtcdLockLost: ``if_held`` does not hold its lock (nothing is written).
        :raises EtcdCompacted: ``if_revision`` is older than etcd's compaction.
        :raises EtcdInvalidTree: bad path or value, ``ttl`` and ``lease`` both
            given, ``ttl`` not > 0, or a conditional write too large for one txn
            (nothing is written).
        :raises EtcdUnsupported: ``lease``, ``if_revision`` or ``if_held`` on v2.
        """
        key, ancestors = self._writable(path)
        held = None if if_held is None else self._held(path, if_held)
        with codec.gc_paused():
            node = codec.encode(value, path, text_only=self._text_only)
            lease_id = self._lease_id(path, ttl, lease)  # granted once the value is valid
            if if_revision is None and ttl is not None and self.settings.api == "v2":
                from .backends.v2 import V2Backend  # v2: node TTLs (see V2Backend.replace)

                backend = self.backend
                if not isinstance(backend, V2Backend):
                    raise EtcdUnsupported(
                        f"ttl= on v2 needs a V2Backend, not {backend!r}", key=path
                    )
                backend.replace(key, node, ancestors, ttl=ttl)
            elif if_revision is None and held is None:
                self.backend.replace(key, node, ancestors, lease=lease_id)
            elif held is None:
                self._v3(path, "if_revision").replace_if(
                    key, ancestors, lambda items: node, lease=lease_id, since=if_revision
                )
            else:
                backend = self._v3(path, "if_held")
                plan = guarded.replace_if(
                    key, ancestors, backend.limits, lambda items: node, lease=lease_id,
                    since=if_revision, held=held,
                )  # fmt: skip
                backend.run(plan, key)

    def _held(self, path: str, if_held: Holder | Held) -> Held:
        """The txn condition of ``if_held`` (a lock, an election or a guard).

        :raises EtcdUnsupported: on v2.
        :raises EtcdLockLost: it does not hold its lock now.
        """
        self._v3(path, "if_held")
        return if_held if isinstance(if_held, guarded.Held) else if_held.guard

    def _lease_id(
        self, path: str, ttl: float | None, lease: Lease | AsyncLease | int | None
    ) -> int:
        """The lease id a write attaches its keys to (0: none); grants one for ``ttl``
        (an :class:`AsyncLease` comes from :class:`AsyncEtcdMiddleware`, with no ``ttl``)."""
        if ttl is not None and lease is not None:
            raise EtcdInvalidTree("give ttl or lease, not both", key=path)
        v2 = self.settings.api == "v2"
        if lease is not None and v2:
            raise EtcdUnsupported("v2 has no leases (use ttl=, or api = v3)", key=path)
        if lease is not None:
            return lease if isinstance(lease, int) else lease.id
        if ttl is None:
            return 0
        if (
            not isinstance(ttl, (int, float))
            or isinstance(ttl, bool)
            or not ttl > 0
            or ttl == float("inf")
        ):
            raise EtcdInvalidTree(f"ttl must be a number of seconds > 0, not {ttl!r}", key=path)
        if v2:  # v2 has node TTLs, not leases: the write gives its nodes the ttl itself
            return 0
        return self.lease(ttl).id

    def _v3(self, path: str, what: str) -> V3Backend:
        """The v3 backend, for what only v3 can do.

        :raises EtcdUnsupported: the middleware uses v2.
        """
        backend = self.backend
        if not isinstance(backend, V3Backend):
            raise EtcdUnsupported(f"{what} needs the v3 API (api = v3)", key=path)
        return backend

    # -- primitives (link.etcd.primitives) ------------------------------------

    def create(
        self, path: str, value: Any, *, ttl: float | None = None, lease: Lease | int | None = None
    ) -> bool:
        """Store ``value`` only if nothing is at ``path``; see :func:`.primitives.create`."""
        return primitives.create(self, path, value, ttl=ttl, lease=lease)

    def compare_and_swap(self, path: str, expected: Any, new: Any) -> bool:
        """Swap only if ``path`` holds ``expected``; see :func:`.primitives.compare_and_swap`."""
        return primitives.compare_and_swap(self, path, expected, new)

    def transform(
        self,
        path: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _MISSING,
        if_held: Holder | Held | None = None,
    ) -> Any:
        """Read-modify-write without lost updates; see :func:`.primitives.transform`."""
        return primitives.transform(self, path, fn, default=default, if_held=if_held)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Store several paths at once (atomic when they fit one txn); see
        :func:`.primitives.update`."""
        primitives.update(self, other, **kwargs)

    def append(self, path: str, value: Any, *, ttl: float | None = None) -> str:
        """Add a last item to the list at ``path``; see :func:`.primitives.append`."""
        return primitives.append(self, path, value, ttl=ttl)

    def history(self, path: str, start_revision: int | None = None) -> Iterator[tuple[int, Any]]:
        """Every version of the tree at ``path`` still in etcd's history, as
        ``(revision, value)``; see :func:`link.etcd.history.history` (v3)."""
        from .history import history

        return history(self, path, start_revision)

    def rollback(self, path: str, revision: int) -> int:
        """Store the tree as it was at ``revision``; see :func:`.primitives.rollback`."""
        return primitives.rollback(self, path, revision)

    # -- leases ------------------------------------------------------------

    def lease(self, ttl: float, *, keepalive: bool = False) -> Lease:
        """Grant a lease of ``ttl`` seconds (rounded up; ``Lease/LeaseGrant``, v3).

        :param keepalive: refresh it in a background thread at about a third of its
            TTL until it is revoked or closed.
        :returns: a :class:`~link.etcd.recipes.lease.Lease` (a context manager that
            revokes it on exit).
        :raises EtcdUnsupported: on v2.
        """
        from .recipes.lease import Lease

        return Lease.grant(self, ttl, keepalive=keepalive)

    def lock(self, name: str, *, ttl: float = 60, timeout: float | None = None) -> Lock:
        """A distributed lock named by the path ``name`` (v3; no request until
        acquired); see :class:`~link.etcd.recipes.lock.Lock` and
        ``docs/coordination.md``.  Its etcd keys are ``<client.key(name)>/<lease
        id in hex>``, as ``etcdctl lock <client.key(name)>`` makes them.

        :param ttl: seconds of the lease behind each holding (kept alive in the
            background at about ``ttl / 3``).
        :param timeout: seconds ``acquire()`` and ``with`` wait by default
            (``None``: for ever).
        :raises EtcdInvalidTree: bad ``name`` or ``ttl``.
        :raises EtcdUnsupported: on v2.
        """
        from .recipes.lock import Lock

        return Lock(self, name, ttl=ttl, timeout=timeout)

    def election(self, name: str, *, ttl: float = 60) -> Election:
        """A leader election named by the path ``name`` (v3; no request until used);
        see :class:`~link.etcd.recipes.election.Election`.  Interoperates with
        ``etcdctl elect <client.key(name)>``.

        :param ttl: seconds of the lease behind a candidacy.
        :raises EtcdInvalidTree: bad ``name`` or ``ttl``.
        :raises EtcdUnsupported: on v2.
        """
        from .recipes.election import Election

        return Election(self, name, ttl=ttl)

    def lease_from_id(self, lease_id: int, *, keepalive: bool = False) -> Lease:
        """A :class:`~link.etcd.recipes.lease.Lease` for an existing lease id (v3).

        :raises EtcdError: etcd does not know the lease.
        :raises EtcdUnsupported: on v2.
        """
        from .recipes.lease import Lease

        return Lease.attach(self, lease_id, keepalive=keepalive)

    def __delitem__(self, path: str) -> None:
        """Delete the leaf or the whole subtree at ``path`` (v3: one ``txn``).

        v3: when the member asked did not answer and the delete was sent again to
        another member that found nothing, the first attempt may have deleted the
        keys: that counts as deleted (no ``KeyError``; nothing is stored now).

        :raises EtcdKeyNotFound: nothing was stored there.
        """
        key, _ = self._writable(path)
        if not self.backend.delete(key):
            raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)

    def pop(self, path: str, default: Any = _MISSING) -> Any:
        """Read and delete ``path``; ``default`` (if given) when nothing is there."""
        try:
            value = self[path]
            del self[path]
        except EtcdKeyNotFound:
            if default is _MISSING:
                raise
            return default
        return value

    def clear(self) -> None:
        """Delete every key below the root prefix (v3: one ``txn``)."""
        self.backend.delete(self._stem)

    # -- watching ----------------------------------------------------------

    def watch(self, path: str = "/", start_revision: int | None = None) -> Watch:
        """Watch ``path`` and its subtree (v3: one ``Watch`` stream, with previous
        values; v2: long polls).

        :param start_revision: first revision (v3) or index (v2) to report;
            ``None`` reports changes from now on.
        :returns: a :class:`link.etcd.watch.Watch`: iterate it for decoded
            :class:`link.etcd.watch.WatchEvent` s, ``cancel()`` to stop.
        """
        from .watch import Watch

        return self._watching(Watch(self.backend.watch(self.key(path), start_revision), self._stem))

    def _watching(self, watch: _W) -> _W:
        """Remember ``watch`` (a Watch or TreeWatch): :meth:`close` stops it."""
        self._watches.add(watch)
        return watch

    def watch_tree(self, path: str, callback: Callable[[Any, int], bool | None]) -> TreeWatch:
        """Call ``callback(value, revision)`` now and after every change below ``path``.

        :returns: the running :class:`link.etcd.watch.TreeWatch`; ``stop()`` ends it.
        """
        from .watch import TreeWatch

        return TreeWatch(self, path, callback)

    def snapshot(
        self, path: str = "/", default: Any = _MISSING, *, revision: int | None = None
    ) -> tuple[Any, int]:
        """``(value, revision)``: the value at ``path`` and the revision (v3) or
        ``X-Etcd-Index`` (v2) it was read at, in one request.

        :param default: returned as the value when nothing is stored at ``path``;
            without it that raises :class:`EtcdKeyNotFound`.
        :param revision: read the tree as it was at this revision (v3: ranges at
            that revision, in one txn).
        :raises EtcdCompacted: ``revision`` is older than etcd's compaction.
        :raises EtcdUnsupported: ``revision`` on v2.
        """
        if revision is None:
            value, revision = self.backend.read_tree(self.key(path))
        else:
            value, revision = self._v3(path, "snapshot(revision=)").read_tree(
                self.key(path), revision
            )
        if value is ABSENT:
            if default is _MISSING:
                raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
            return default, revision
        return value, revision


def _uri_fields(uri: str | None) -> dict[str, Any]:
    if uri is None:
        return {}
    from .settings import parse_uri

    return parse_uri(uri)
