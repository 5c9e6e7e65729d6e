"""The boundary between the middleware and an etcd API.

A backend works one level above single keys: it reads a subtree, replaces a
subtree and deletes a subtree, because that is the level at which both APIs can
be correct without pretending (v3 has multi-key transactions, v2 has real
directories, in-order keys and no transactions).  Absence is data
(:data:`ABSENT`, ``0`` deleted keys); the middleware decides what raises.
:class:`KeyValue` and :class:`Snapshot` are the v3 backend's flat reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from ..codec import Node
from ..errors import EtcdInvalidTree

#: Bytes kept free in each request for framing and compares, and counted per operation.
REQUEST_OVERHEAD_BYTES = 4096
OP_OVERHEAD_BYTES = 32
#: Seconds a watch may see nothing before it checks that its member still answers
#: (a member that hangs sends no error, so a silent watch must probe it).
WATCH_IDLE_SECONDS = 10.0


def check_leaf_sizes(leaves: Iterable[tuple[str, bytes]], max_request_bytes: int) -> None:
    """Refuse, before anything is written, a key and value that no request can carry.

    etcd rejects a request larger than ``--max-request-bytes`` (1.5 MiB by
    default), on v3 and on v2 alike.

    :param leaves: ``(key, value)`` pairs to be written.
    :param max_request_bytes: the server's limit, in bytes.
    :raises EtcdInvalidTree: naming the first key that is too large.
    """
    limit = max_request_bytes - REQUEST_OVERHEAD_BYTES
    for key, value in leaves:
        if len(key.encode("utf-8", "surrogateescape")) + len(value) + OP_OVERHEAD_BYTES > limit:
            raise EtcdInvalidTree(
                f"{key!r} holds {len(value)} bytes, more than one etcd request may carry "
                f"(max_request_bytes={max_request_bytes})",
                key=key,
            )


class KeyValue(NamedTuple):
    """One stored key.  ``value`` is ``b''`` when read with ``keys_only``; ``lease``
    is the id of the lease it is attached to (0: none); ``create_revision`` the
    store revision that created it (since its last delete) and ``version`` the
    number of writes since then (1: written once).  The last three are v3 only
    (0 on v2)."""

    key: str
    value: bytes
    mod_revision: int
    lease: int = 0
    create_revision: int = 0
    version: int = 0


class _Absent:
    """The type of :data:`ABSENT`."""

    def __repr__(self) -> str:
        return "ABSENT"


#: What :meth:`Backend.read_tree` returns as the value when nothing is stored.
ABSENT: Final = _Absent()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A subtree read at one point in time.

    :attr revision: the store revision (v3) or ``X-Etcd-Index`` (v2) of the read.
    :attr items: the subtree's own key (if it is a leaf) and every key below it.
    """

    revision: int
    items: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch: ``type`` is ``'PUT'`` or ``'DELETE'``; ``prev_value``
    the key's value before it (v3, when etcd still had it), else None."""

    type: str
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None


class Backend(Protocol):
    """What the middleware needs from an etcd API.  Every method is thread-safe."""

    endpoints: tuple[str, ...]

    def read_tree(self, key: str) -> tuple[Any, int]:
        """``(value, revision)``: the Python value stored at ``key`` (decoded by
        :mod:`link.etcd.codec`), :data:`ABSENT` when nothing is, in one request."""
        ...

    def exists(self, key: str) -> bool:
        """True when ``key`` is a leaf or has keys below it."""
        ...

    def children(self, key: str) -> list[str]:
        """Names of the direct children of ``key`` (one segment each, sorted)."""
        ...

    def replace(self, key: str, node: Node, ancestors: Sequence[str], *, lease: int = 0) -> None:
        """Make ``key`` hold exactly ``node``; delete leaves at ``ancestors``; attach
        every key written to lease ``lease`` (0: none; v2 raises EtcdUnsupported)."""
        ...

    def delete(self, key: str) -> int:
        """Delete the leaf at ``key`` and every key below it; return how many were deleted
        (v2: ``1`` when something was deleted)."""
        ...

    def watch(self, key: str, start_revision: int | None = None) -> Watch:
        """Watch ``key`` and every key below it for changes."""
        ...

    def close(self) -> None:
        """Release connections; the backend must not be used afterwards."""
        ...


class Watch(Protocol):
    """An open watch: iterate to receive :class:`Event` s, ``cancel()`` to stop."""

    def __iter__(self) -> Iterator[Event]: ...

    def cancel(self) -> None: ...
