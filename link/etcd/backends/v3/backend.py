"""V3Backend: the sync driver that runs the engine's plans over a transport."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ...codec import Node
from ...errors import EtcdCompacted, EtcdError, EtcdSettingsError
from ...settings import EtcdSettings
from ..base import KeyValue, Snapshot
from . import engine, guarded, progress
from .engine import CONTROL_STEPS, Call, Concurrent, Limits, Plan, R, Sleep, answer_as
from .protocol import LeaseGrant, LeaseKeepAlive, LeaseResult, LeaseRevoke, LeaseTimeToLive
from .transport import Transport
from .watch import V3Watch


def drive(plan: Plan[R], transport: Transport, key: str | None = None) -> R:
    """Run ``plan`` to its end over ``transport``, one step at a time; its result.

    A step that raises an :class:`EtcdError` has it thrown into the plan (at its
    ``yield``), which may catch it and go on.

    :raises EtcdError: what a request raised and the plan did not catch (the plan
        is closed), or what the plan raised; an error naming no endpoint is given
        the transport's.
    """
    answer: Any = None
    error: EtcdError | None = None
    watched = progress.watched()
    try:
        while True:
            if error is None:
                step = plan.send(answer)
            else:
                step, error = plan.throw(error), None
            if watched:
                step = progress.observe(step)
            try:
                answer = _perform(step, transport, key, watched)
            except EtcdError as exc:
                error = exc
    except StopIteration as stop:
        result: R = stop.value  # what the plan returned: a Plan[R] returns an R
        return result
    except EtcdError as exc:
        if not exc.endpoints:
            exc.endpoints = transport.endpoints
        raise
    finally:
        plan.close()


def _perform(step: Any, transport: Transport, key: str | None, watched: bool) -> Any:
    """One step of a plan (see :mod:`.engine`); its answer.  ``watched``: a
    progress report is installed (:func:`.progress.watched`)."""
    kind = type(step)
    if kind not in CONTROL_STEPS:  # a request: most steps
        answer = transport.call(step, key)
        if watched:
            progress.answered(step, answer)
        return answer
    if kind is Concurrent:
        return transport.call_many(step.requests, step.limit, key)
    if kind is Sleep:
        time.sleep(step.seconds)
    elif kind is Call:
        return step.function(step.argument)
    return None  # Pause


def open_transport(settings: EtcdSettings) -> Transport:
    """The transport ``settings.transport`` names (``'grpc'`` or ``'gateway'``)."""
    if settings.transport == "gateway":
        from .gateway import GatewayTransport

        return GatewayTransport(settings)
    from .grpc import GrpcTransport

    return GrpcTransport(settings)


class V3Backend:
    """The :class:`~link.etcd.backends.base.Backend` of the etcd v3 API.  Thread-safe;
    fails over between endpoints.

    :param settings: connection settings; ``urls`` gives the endpoints, tried in
        order starting from the last one that answered; ``transport`` picks gRPC
        (default) or the JSON gateway.
    :raises EtcdSettingsError: a v2-only setting is given.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        for name in ("srv_domain", "expected_cluster_id"):
            if getattr(settings, name):
                raise EtcdSettingsError(
                    f"{name} is only used by the v2 API (api = v2); "
                    "with v3 give the cluster's endpoints"
                )
        self.settings = settings
        self.transport = open_transport(settings)
        self.endpoints: tuple[str, ...] = self.transport.endpoints
        self.limits = Limits(settings.max_txn_ops, settings.max_request_bytes)
        #: keys the user's role was found not to cover (see :func:`.engine.checkable`)
        self.uncovered: set[str] = set()

    def __repr__(self) -> str:
        return f"V3Backend(transport={self.settings.transport!r}, endpoints={self.endpoints!r})"

    def run(self, plan: Plan[R], key: str | None = None) -> R:
        """Run one of :mod:`.engine`'s plans; its result."""
        return drive(plan, self.transport, key)

    def read(self, key: str, *, keys_only: bool = False) -> Snapshot:
        """The leaf at ``key`` and every key below it, at one revision (one txn of two
        ranges; ranges pinned to its revision past ``PAGE_SIZE`` keys)."""
        return self.run(engine.snapshot(key, keys_only=keys_only), key)

    def read_tree(self, key: str, revision: int = 0) -> tuple[Any, int]:
        """``(value, revision)``; :data:`~link.etcd.backends.base.ABSENT` when nothing is
        stored.  With ``revision``, the tree as it was then (ranges at that revision).

        :raises EtcdCompacted: ``revision`` was compacted away.
        """
        try:
            return self.run(engine.read_tree(key, revision), key)
        except EtcdCompacted as exc:
            if exc.compact_revision is None:  # etcd's error does not say: find it
                from ...history import oldest_revision

                exc.compact_revision = oldest_revision(self, key, self.read(key).revision)
            raise

    def exists(self, key: str) -> bool:
        """One txn of two ``count_only`` ranges."""
        return bool(self.run(engine.exists(key), key))

    def children(self, key: str) -> list[str]:
        """Direct child names of ``key``, from one ``keys_only`` read of the subtree."""
        return self.run(engine.children(key), key)

    def replace(self, key: str, node: Node, ancestors: Sequence[str], *, lease: int = 0) -> None:
        """See :func:`.engine.replace`."""
        plan = engine.replace(
            key, node, ancestors, self.limits, lease=lease, uncovered=self.uncovered
        )
        self.run(plan, key)

    def delete(self, key: str) -> int:
        """Delete ``key`` and everything below it in one txn; how many keys (-1: the
        answer came from a retry on another member that found nothing, after an
        attempt that may have deleted them; see :func:`.engine.delete`)."""
        return self.run(engine.delete(key), key)

    def replace_if(
        self,
        key: str,
        ancestors: Sequence[str],
        decide: Callable[[list[KeyValue]], Any],
        *,
        lease: int = 0,
        since: int | None = None,
        attempts: int = guarded.GUARDED_ATTEMPTS,
    ) -> tuple[bool, int]:
        """See :func:`.guarded.replace_if`: ``(written, revision)``."""
        plan = guarded.replace_if(
            key, ancestors, self.limits, decide, lease=lease, since=since, attempts=attempts
        )
        return self.run(plan, key)

    def replace_many(self, entries: Sequence[tuple[str, Node, Sequence[str]]]) -> int:
        """See :func:`.guarded.replace_many`: the revision of the write."""
        return self.run(guarded.replace_many(entries, self.limits))

    def append(self, key: str, node: Node, ancestors: Sequence[str], *, lease: int = 0) -> str:
        """See :func:`.guarded.append`: the new item's position segment."""
        plan = guarded.append(key, node, ancestors, self.limits, lease=lease)
        return self.run(plan, key)

    # -- leases (etcd's Lease service) ----------------------------------------

    def lease_grant(self, ttl: int) -> LeaseResult:
        """``Lease/LeaseGrant``: a new lease of ``ttl`` seconds; its ``id`` and granted ``ttl``."""
        return answer_as(LeaseResult, self.transport.call(LeaseGrant(ttl)))

    def lease_revoke(self, lease_id: int) -> None:
        """``Lease/LeaseRevoke``: end the lease and delete every key attached to it.

        :raises EtcdError: etcd does not know the lease (expired or revoked).
        """
        self.transport.call(LeaseRevoke(lease_id))

    def lease_keepalive(self, lease_id: int) -> int:
        """``Lease/LeaseKeepAlive``: one refresh; the new TTL in seconds (``<= 0``: the
        lease is gone)."""
        return answer_as(LeaseResult, self.transport.call(LeaseKeepAlive(lease_id))).ttl

    def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseResult:
        """``Lease/LeaseTimeToLive``: seconds left (``ttl``, -1 when gone), the granted
        TTL and, with ``keys``, the keys attached (bytes)."""
        return answer_as(LeaseResult, self.transport.call(LeaseTimeToLive(lease_id, keys)))

    def watch(self, key: str, start_revision: int | None = None) -> V3Watch:
        """Watch ``key`` and every key below it (one stream per call)."""
        return V3Watch(self.transport, key, start_revision)

    def close(self) -> None:
        """Close the transport's channels or sessions and threads."""
        self.transport.close()
