"""AsyncEtcdMiddleware: the dictionary of trees for asyncio code.

The same trees, settings, errors and guarantees as
:class:`~link.etcd.middleware.EtcdMiddleware`, because it runs the same plans
(:mod:`link.etcd.backends.v3.engine`, :mod:`~link.etcd.backends.v3.guarded`)
with the async driver (:mod:`.driver`) over ``grpc.aio`` or httpx.  Paths and
values are checked by the same helpers (:mod:`link.etcd.paths`,
:func:`link.etcd.codec.encode`) before any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import codec
from ..backends.base import ABSENT, KeyValue
from ..backends.v3 import engine, guarded
from ..backends.v3.engine import Limits, Plan, R
from ..errors import EtcdKeyNotFound, EtcdTxnTooLarge, EtcdUnsupported
from ..middleware import EtcdMiddleware
from ..primitives import MISSING, _stored
from ..settings import EtcdSettings
from .driver import AsyncTransport, drive, open_transport, settle
from .watch import AsyncV3Watch, AsyncWatch, tree_versions

if TYPE_CHECKING:
    from ..watch import WatchEvent
    from .lease import AsyncLease


class AsyncEtcdMiddleware:
    """A dictionary of trees over etcd's v3 API, for asyncio: every operation is a
    coroutine; watches are async iterators.

    Same constructor and settings as :class:`~link.etcd.middleware.EtcdMiddleware`
    (``middleware.conf`` files, ``LINK_ETCD_*`` variables, ``uri``, keywords);
    ``transport`` picks ``grpc.aio`` (``'grpc'``, default) or etcd's JSON gateway
    through httpx (``'gateway'``, needs ``link.etcd[aio]``).  No connection is
    opened before the first operation; :meth:`aclose` (or leaving ``async with``)
    closes every channel, connection, watch and lease keepalive.  One instance is
    meant to be shared by every task of one event loop.

    :raises EtcdUnsupported: ``api = v2`` (v2 stays sync-only: use
        :class:`~link.etcd.middleware.EtcdMiddleware`).
    :raises EtcdSettingsError: a setting is unknown or has a bad value.
    """

    def __init__(
        self, settings: EtcdSettings | None = None, *, uri: str | None = None, **overrides: Any
    ) -> None:
        # the sync middleware resolves the settings and owns the path rules (key(),
        # _writable()); it is never connected: every request goes through run()
        self._paths = EtcdMiddleware(settings, uri=uri, **overrides)
        self.settings: EtcdSettings = self._paths.settings
        if self.settings.api != "v3":
            raise EtcdUnsupported(
                "AsyncEtcdMiddleware needs the v3 API (api = v3); the v2 API is sync-only: "
                "use link.etcd.EtcdMiddleware with api = v2"
            )
        self.limits = Limits(self.settings.max_txn_ops, self.settings.max_request_bytes)
        self._transport: AsyncTransport | None = None
        self._watches: set[AsyncWatch[Any]] = set()
        self._leases: set[AsyncLease] = set()
        #: keys the user's role was found not to cover (see
        #: :func:`link.etcd.backends.v3.engine.checkable`), as the sync client keeps them
        self.uncovered: set[str] = set()

    @classmethod
    def from_uri(cls, uri: str, **overrides: Any) -> AsyncEtcdMiddleware:
        """Build one from ``etcd://[user:password@]host[:port][,host2...][/prefix][?k=v]``
        (see :meth:`EtcdMiddleware.from_uri`)."""
        return cls(uri=uri, **overrides)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"AsyncEtcdMiddleware(transport={s.transport!r}, endpoints={s.urls!r}, "
            f"prefix={s.prefix!r})"
        )

    async def __aenter__(self) -> AsyncEtcdMiddleware:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def transport(self) -> AsyncTransport:
        """The async transport, created on first use (no request is sent)."""
        if self._transport is None:
            self._transport = open_transport(self.settings)
        return self._transport

    async def aclose(self) -> None:
        """Stop every lease keepalive and watch, wait for the reads still running for
        cancelled tasks, close channels and connections; the client opens new
        ones if used again.  Leases are not revoked (they expire)."""
        for lease in list(self._leases):
            await lease.close()
        for watch in list(self._watches):
            await watch.aclose()
        transport, self._transport = self._transport, None
        if transport is not None:
            await settle(transport)
            await transport.aclose()

    async def run(self, plan: Plan[R], key: str | None = None) -> R:
        """Run one of the engine's plans over this client's transport; its result."""
        return await drive(plan, self.transport, key)

    def key(self, path: str) -> str:
        """The etcd key that ``path`` names (see :meth:`EtcdMiddleware.key`)."""
        return self._paths.key(path)

    # -- reading -------------------------------------------------------------------

    async def get(self, path: str, default: Any = MISSING) -> Any:
        """The value at ``path`` (one txn of two ranges): a scalar for a leaf, the
        whole tree for a directory.

        :param default: returned when nothing is stored at ``path``; without it
            that raises :class:`EtcdKeyNotFound` (the async ``client[path]``).
        :raises EtcdConnectionFailed: no endpoint answered; never turned into
            ``default``.
        """
        return (await self.snapshot(path, default))[0]

    async def snapshot(
        self, path: str = "/", default: Any = MISSING, *, revision: int | None = None
    ) -> tuple[Any, int]:
        """``(value, revision)`` in one request; see :meth:`EtcdMiddleware.snapshot`.

        :raises EtcdKeyNotFound: nothing is stored and no ``default`` was given.
        :raises EtcdCompacted: ``revision`` is older than etcd's compaction.
        """
        key = self.key(path)
        value, at = await self.run(engine.read_tree(key, revision or 0), key)
        if value is not ABSENT:
            return value, at
        if default is MISSING:
            raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
        return default, at

    async def contains(self, path: str) -> bool:
        """True when ``path`` is a leaf or a directory (one ``count_only`` txn)."""
        key = self.key(path)
        return bool(await self.run(engine.exists(key), key))

    async def children(self, path: str = "/") -> list[str]:
        """Names of the direct children of ``path``, sorted (one ``keys_only`` read);
        see :meth:`EtcdMiddleware.children`."""
        key = self.key(path)
        return await self.run(engine.children(key), key)

    # -- writing -------------------------------------------------------------------

    async def set(
        self,
        path: str,
        value: Any,
        *,
        ttl: float | None = None,
        lease: AsyncLease | int | None = None,
        if_revision: int | None = None,
    ) -> None:
        """Replace whatever is at ``path`` with ``value`` (the async
        ``client[path] = value``); see :meth:`EtcdMiddleware.set`.

        :param ttl: seconds the tree lives (a lease of ``ceil(ttl)`` seconds is
            granted for this write).
        :param lease: an :class:`~link.etcd.aio.lease.AsyncLease` (or its id) every
            key is attached to.  Not with ``ttl``.
        :param if_revision: write only if nothing at or below ``path`` changed
            after this revision (the check and the write are one txn).
        :raises EtcdInvalidTree: bad path or value (nothing is written).
        :raises EtcdCompareFailed: ``if_revision`` was given and the tree changed,
            or concurrent writers kept changing it.
        :raises EtcdPartialWrite: a write of several txns stopped part way.
        """
        key, ancestors = self._paths._writable(path)
        with codec.gc_paused():  # a large tree makes many objects, no cycles
            node = codec.encode(value, path)
        await asyncio.sleep(0)  # let the loop run between encoding and the plan's first step
        lease_id = await self._lease_id(path, ttl, lease)
        plan: Plan[object]  # the result is not used
        if if_revision is None:
            plan = engine.replace(
                key, node, ancestors, self.limits, lease=lease_id, uncovered=self.uncovered
            )
        else:
            plan = guarded.replace_if(
                key, ancestors, self.limits, lambda items: node, lease=lease_id, since=if_revision
            )
        await self.run(plan, key)

    async def delete(self, path: str) -> None:
        """Delete the leaf or the whole subtree at ``path`` (one txn).

        :raises EtcdKeyNotFound: nothing was stored there.
        """
        key, _ = self._paths._writable(path)
        if not await self.run(engine.delete(key), key):
            raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)

    async def create(
        self,
        path: str,
        value: Any,
        *,
        ttl: float | None = None,
        lease: AsyncLease | int | None = None,
    ) -> bool:
        """Store ``value`` only if nothing is at ``path`` (one read, one guarded txn);
        see :func:`link.etcd.primitives.create`.  True when written."""
        key, ancestors = self._paths._writable(path)
        node = codec.encode(value, path)
        lease_id = await self._lease_id(path, ttl, lease)
        plan = guarded.replace_if(
            key,
            ancestors,
            self.limits,
            guarded.if_absent(node),
            lease=lease_id,
        )
        return (await self.run(plan, key))[0]

    async def compare_and_swap(self, path: str, expected: Any, new: Any) -> bool:
        """Store ``new`` only if ``path`` holds exactly ``expected``; see
        :func:`link.etcd.primitives.compare_and_swap`.  True when swapped."""
        key, ancestors = self._paths._writable(path)
        decide = guarded.if_equal(key, codec.encode(expected, path), codec.encode(new, path))
        plan = guarded.replace_if(key, ancestors, self.limits, decide)
        return (await self.run(plan, key))[0]

    async def transform(
        self, path: str, fn: Callable[[Any], Any], *, default: Any = MISSING
    ) -> Any:
        """Read the tree at ``path``, store ``fn(tree)`` guarded by that read, again
        when another writer got in between: no update is lost; see
        :func:`link.etcd.primitives.transform`.

        :param fn: a function or a coroutine function (awaited), called once per
            attempt with the current value.
        :param default: what ``fn`` gets when nothing is stored; without it, a
            missing path raises :class:`EtcdKeyNotFound`.
        :returns: the value stored (what ``fn`` returned).
        """
        key, ancestors = self._paths._writable(path)
        result: list[Any] = []

        async def decide(items: list[KeyValue]) -> Any:
            old = _stored(items, key)
            if old is ABSENT and default is MISSING:
                raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
            value = fn(default if old is ABSENT else old)
            result[:] = [(await value) if inspect.isawaitable(value) else value]
            return codec.encode(result[0], path)

        await self.run(guarded.replace_if(key, ancestors, self.limits, decide), key)
        return result[0]

    async def update(
        self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any
    ) -> None:
        """Store several paths, all validated first; one txn when they fit (all or
        none written), else one replace per path; see :func:`link.etcd.primitives.update`."""
        pairs = list(other.items() if isinstance(other, Mapping) else other) + list(kwargs.items())
        entries = []
        for path, value in pairs:
            key, ancestors = self._paths._writable(path)
            entries.append((key, codec.encode(value, path), ancestors))
        await self.run(update_plan(entries, self.limits))

    async def append(self, path: str, value: Any, *, ttl: float | None = None) -> str:
        """Add ``value`` as the last item of the list at ``path``; its path; see
        :func:`link.etcd.primitives.append`."""
        key, ancestors = self._paths._writable(path)
        node = codec.encode(value, path)
        lease_id = await self._lease_id(path, ttl, None)
        plan = guarded.append(key, node, ancestors, self.limits, lease=lease_id)
        return f"{path.rstrip('/')}/{await self.run(plan, key)}"

    # -- leases ----------------------------------------------------------------------

    def lease(self, ttl: float, *, keepalive: bool = False) -> AsyncLease:
        """A lease of ``ceil(ttl)`` seconds, granted by ``async with`` (revoked on
        exit) or by awaiting it; see :class:`~link.etcd.aio.lease.AsyncLease`.

        :param keepalive: refresh it from a task at about a third of its TTL.
        """
        from .lease import AsyncLease

        return AsyncLease(self, ttl, keepalive=keepalive)

    async def _lease_id(self, path: str, ttl: float | None, lease: AsyncLease | int | None) -> int:
        """The lease a write attaches its keys to (0: none); grants one for ``ttl``."""
        if ttl is None or lease is not None:  # the sync rules (no request): both given, ids
            return self._paths._lease_id(path, ttl, lease)
        return (await self.lease(ttl)).id

    # -- watching ----------------------------------------------------------------------

    def watch(self, path: str = "/", start_revision: int | None = None) -> AsyncWatch[WatchEvent]:
        """Watch ``path`` and its subtree (one ``Watch`` stream, with previous values):
        ``async for`` :class:`link.etcd.watch.WatchEvent` s, as the sync
        :meth:`EtcdMiddleware.watch` gives them.  Resumes after the last revision
        seen when a stream drops.  Cancelling the iterating task, :meth:`AsyncWatch.aclose`
        or leaving ``async with`` closes the stream.  The stream opens on the first
        iteration; ``async with client.watch(path) as events`` reports every change
        made after entering.

        :param start_revision: the first revision reported; ``None``: from now on.
        """
        from ..watch import Watch

        events = AsyncV3Watch(self.transport, self.key(path), start_revision)
        decode = Watch(events, self.key("/"))._decode  # the sync API's decoding

        async def decoded() -> AsyncGenerator[WatchEvent, None]:
            async with contextlib.aclosing(events.events()) as stream:
                async for event in stream:
                    yield decode(event)

        return self._opened(AsyncWatch(decoded(), events.cancel, self._watches.discard, events.pin))

    def watch_tree(self, path: str) -> AsyncWatch[tuple[Any, int]]:
        """``async for value, revision``: the tree at ``path`` now (``None`` when
        nothing is stored), then after every change, read again in one request;
        a write of many keys in one txn gives one item.  Changes made while an
        item is being handled are not lost: the next item is the latest tree.  When
        etcd compacted the history the watch was to resume from, the tree is read
        again and handed on (no change is lost).
        """
        inner: list[AsyncWatch[WatchEvent]] = []

        def versions() -> AsyncGenerator[tuple[Any, int], None]:
            return tree_versions(
                lambda: self.snapshot(path, default=None),
                lambda revision: self.watch(path, start_revision=revision),
                inner,
                lambda: tree.cancelled,
            )

        def cancel() -> None:
            for watch in inner:
                watch.cancel()

        tree = AsyncWatch(versions(), cancel, self._watches.discard)
        return self._opened(tree)

    def _opened(self, watch: AsyncWatch[Any]) -> AsyncWatch[Any]:
        self._watches.add(watch)
        return watch


def update_plan(
    entries: list[tuple[str, codec.Node, list[str]]], limits: Limits
) -> Plan[int | None]:
    """Plan: store ``entries`` (``(key, node, ancestors)``) in one guarded txn when
    they fit one and none is another's ancestor; else one replace per entry, in
    order (what :func:`link.etcd.primitives.update` sends)."""
    keys = [key for key, _, _ in entries]
    nested = any(a != b and b.startswith(a + "/") for a in keys for b in keys)
    if entries and not nested and len(set(keys)) == len(keys):
        try:
            return (yield from guarded.replace_many(entries, limits))
        except EtcdTxnTooLarge:
            pass
    for key, node, ancestors in entries:
        yield from engine.replace(key, node, ancestors, limits)
    return None


__all__ = ["AsyncEtcdMiddleware", "update_plan"]
