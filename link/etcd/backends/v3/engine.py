"""The v3 tree engine: which requests read, write and delete a tree, with no I/O.

Written once for every driver (sync and async) and every transport (gRPC and the
JSON gateway).  A *plan* is a generator: it yields a *step* and is sent the
step's answer, until it returns the operation's result.  A step is

- one request of :mod:`.protocol` (answered with its ``*Result``; an error is
  raised by the driver and ends the plan);
- :class:`Concurrent`: several requests to keep in flight together, answered
  with a list holding, in order, each one's ``*Result`` or the
  :class:`~link.etcd.errors.EtcdError` it failed with;
- :class:`Sleep`: wait, answered with ``None``;
- :class:`Call`: call a user function (``transform``'s), answered with its result;
- :data:`PAUSE`: a point where an async driver lets its event loop run, between
  the long computations of a large tree (answered with ``None``).

The driver loop (see :func:`drive` in ``backend.py`` and the async twin) is::

    answer = None
    while True:
        step = plan.send(answer)     # StopIteration.value is the result
        answer = <perform step>      # on an EtcdError: plan.throw(error)

**Reads** of a value are one plain range ``[key, key + '0')`` (``'0'`` is the
byte after ``'/'``: the key itself and everything below ``key + '/'``), paged at
its revision past :data:`PAGE_SIZE` keys (see :func:`read_tree`); other reads
are one txn of ranges evaluated at one revision. **Writes** encode the tree
first; a single leaf is one txn with no read (put it, delete the range below it
and any ancestor leaves). A tree reads the subtree's current keys and values and
sends only what changes as txns within ``max_txn_ops`` and
``max_request_bytes``, each comparing the mod revisions of what it covers
against the read's revision; on a failed compare the write starts again from a
fresh read. One txn makes the replace atomic; a write of several ends with a
``keys_only`` read that proves no other writer got in between (see
:func:`replace`).

**Errors.**  A request that fails raises its :class:`~link.etcd.errors.EtcdError`
*inside* the plan, at the ``yield`` that sent it (the drivers use
``plan.throw``), so a plan may catch one and go on; one it does not catch ends it.

**Retries.**  The transports send a request again on the next member when one
did not answer usefully (refused, reset, ``read_timeout`` passed, no leader:
:meth:`.transport.Failover.attempt`).  A member may have applied a write whose
answer was lost, so an answer obtained after such a failure is marked
``retried`` (:func:`.protocol.mark_retried`) and the plans read it as "an
earlier attempt may have been applied":

- reads (``range``, read-only txns): nothing to resolve;
- a tree write (guarded by compares on mod revisions against its read's
  revision): an applied first attempt changed those mod revisions, so the
  retried txn's compares fail and it applies nothing; the write reads again and
  finds its own keys (nothing left to send) -- never applied twice;
- a large write's txns: the same compares; a retried one that fails counts as a
  conflict, and the write starts again from a fresh read;
- the guarded writes of :mod:`.guarded` (create, compare-and-swap, transform,
  update, append): the same compares; a retried txn that fails is resolved by
  reading the keys it put at the failed answer's revision: all holding its
  values, last changed together by one txn after the read, means the first
  attempt was applied, and that is reported (the user's function is not called
  again);
- :func:`delete`: deleting twice deletes nothing more; a retried delete that
  found nothing reports ``-1`` (:data:`DELETED_BEFORE_RETRY`: the lost attempt
  may have deleted it, and nothing is stored now) instead of 0, so ``del`` does
  not raise ``KeyError`` for a key it deleted;
- a leaf write (one txn with no compare: put the leaf, delete below it and its
  ancestors' leaves) **may be applied twice**: both apply the same puts and
  deletes, so the keyspace ends the same, but a watcher sees the put twice and
  a write another client made between the two is overwritten.

**Prefix-scoped roles.**  A write also deletes (or reads and compares) the leaf
keys of its path's ancestors, so that no key is both a leaf and a directory.
A user whose role covers only a prefix (``readwrite /app/`` with ``--prefix``)
may not touch the ancestor ``/app``: etcd refuses the whole txn with
``PERMISSION_DENIED``.  The plans then leave out the shallowest ancestors, one
depth at a time, until etcd accepts (:func:`checkable`): every ancestor the role
covers is still checked, the others are left as they are (a leaf stored there
by someone else stays, and reads ignore it: the directory wins, see
``docs/storage-format.md``).  A read of a path whose own key the role does not
cover reads the range below it only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast

from ... import codec
from ...codec import Node, iter_flatten
from ...errors import (
    EtcdCompareFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdPartialWrite,
    EtcdPermissionDenied,
)
from ...paths import SEP, below, encode_key
from ..base import ABSENT, OP_OVERHEAD_BYTES, REQUEST_OVERHEAD_BYTES, Snapshot, check_leaf_sizes
from .protocol import (
    DeleteRange,
    DeleteRangeResult,
    Op,
    Put,
    Range,
    RangeResult,
    Request,
    Txn,
    TxnResult,
    unchanged_since,
)

#: Keys per range answer when reading very large subtrees.  Large, because etcd
#: counts every key of the range for each page it sends (the ``count`` of a
#: limited range): five pages of 20,000 cost etcd 1.4x the CPU of one range.
PAGE_SIZE = 100_000
#: Txns of one large (non-atomic) write kept in flight at the same time: etcd
#: commits concurrent txns in one raft round, so more in flight cost etcd less
#: CPU per key and the write less time (a 10,000-leaf write over gRPC on one
#: local etcd 3.5.1: 4 in flight 0.92x python3-etcd3's txns of 128, 8 0.88x,
#: 16 0.84x; at 100,000 leaves 0.88x, 0.79x, 0.78x).  The gateway transport
#: sends them over at most ``per_host_pool_size`` connections.
TXNS_IN_FLIGHT = 16
#: Write attempts (first + retries) while compares keep failing.
WRITE_ATTEMPTS = 10
#: Keys past which a plan pauses between its long computations (see :data:`PAUSE`).
PAUSE_AFTER = 1_000
#: What :func:`delete` returns when its answer came from a retry that deleted
#: nothing: an earlier attempt, whose answer was lost, may have deleted the keys.
DELETED_BEFORE_RETRY: Final = -1
#: Keys a client remembers as not covered by its role, at most (see :func:`checkable`).
UNCOVERED_KEPT = 1_024


@dataclass(frozen=True, slots=True)
class Concurrent:
    """A step: send ``requests`` with at most ``limit`` in flight at once.  The
    requests may be an iterator: a driver takes each one when it has room to send
    it, so that building the later ones overlaps the answers to the first."""

    requests: Iterable[Request]
    limit: int
    #: the keys the requests put or delete, when known (for progress reports)
    keys: int | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """A step: wait ``seconds`` (backoff between write attempts)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Pause:
    """A step between two long computations of a plan: an async driver lets its
    event loop run (a sync one goes on at once); answered with ``None``."""


#: The one :class:`Pause`.
PAUSE: Final = Pause()


@dataclass(frozen=True, slots=True)
class Call:
    """A step: call ``function(argument)`` (user code, which an async driver may
    await) and send back what it returned."""

    function: Callable[[Any], Any]
    argument: Any


@dataclass(frozen=True, slots=True)
class Limits:
    """The server limits a write is cut to (etcd's ``--max-txn-ops`` and
    ``--max-request-bytes``)."""

    max_txn_ops: int = 128
    max_request_bytes: int = 1572864


Step: TypeAlias = "Request | Concurrent | Sleep | Call | Pause"
#: The steps that are not requests, for a driver's dispatch on ``type(step)``.
CONTROL_STEPS: Final = frozenset({Concurrent, Sleep, Call, Pause})
R = TypeVar("R")
#: A plan returning ``R`` (``Plan[Snapshot]``): it yields steps and is sent their
#: answers (typed ``Any``: each step has its own answer type, which the plan
#: annotates where it receives it).
Plan: TypeAlias = Generator[Step, Any, R]

#: What a read's items are: :class:`KeyValue` s, ``(key, value)`` pairs, or
#: ``(key, mod_revision)`` pairs (a write's verification; cheaper than key-values).
Items: TypeAlias = Literal["kvs", "pairs", "mod_revisions"]

#: One change of a write: ``(key, value)`` to put, ``(key, None)`` to delete; the key
#: as etcd's bytes (encoded once, by :func:`diff`).
Change: TypeAlias = "tuple[bytes, bytes | None]"


# -- reads --------------------------------------------------------------------


def snapshot(
    key: str,
    *,
    keys_only: bool = False,
    singles: Sequence[str] | None = None,
    pairs: bool = False,
    revision: int = 0,
) -> Plan[Snapshot]:
    """Plan: the leaf at ``key`` and every key below it, at one revision.

    One txn of a range per key of ``singles`` (default: ``key`` itself) and a
    range of ``key + '/'``; more ranges pinned to the txn's revision only past
    :data:`PAGE_SIZE` keys.

    :param pairs: items as ``(key, value)`` tuples, not :class:`KeyValue` s (what
        a tree read needs, made faster).
    :param revision: read the tree as it was at this revision (0: now).
    :returns: a :class:`~link.etcd.backends.base.Snapshot`, items sorted by key
        within each range.
    """
    if singles is None:
        singles = [key] if key else []
    answer: TxnResult = yield read_txn(key, singles, keys_only=keys_only, revision=revision)
    items: Items = "pairs" if pairs else "kvs"
    return (yield from paged(answer, key, keys_only=keys_only, items=items, revision=revision))


def read_txn(
    key: str, singles: Sequence[str], *, keys_only: bool = False, revision: int = 0
) -> Txn:
    """The txn of :func:`snapshot`: a range per key of ``singles``, then the range
    below ``key`` (at most :data:`PAGE_SIZE` keys)."""
    ops: list[Op] = [
        Range(encode_key(single), keys_only=keys_only, revision=revision) for single in singles
    ]
    ops.append(Range(*below(key), limit=PAGE_SIZE, keys_only=keys_only, revision=revision))
    return Txn((), ops)


def paged(
    answer: TxnResult,
    key: str,
    *,
    keys_only: bool = False,
    items: Items = "kvs",
    revision: int = 0,
) -> Plan[Snapshot]:
    """Plan: the :class:`Snapshot` of a :func:`read_txn` answer, with the pages of
    the range below ``key`` past the first, read at the answer's revision; its
    items shaped as ``items`` says."""
    ranges = ranges_of(answer)
    found: list[Any] = [item for r in ranges for item in _items(r, items)]
    more = ranges[-1].more
    end = below(key)[1]
    while more:
        start = encode_key(found[-1][0]) + b"\x00"
        page: RangeResult = yield Range(
            start, end, limit=PAGE_SIZE, revision=revision or answer.revision, keys_only=keys_only
        )
        found.extend(_items(page, items))
        more = page.more
    return Snapshot(answer.revision, found)


def _items(answer: RangeResult, shape: Items) -> list[Any]:
    if shape == "pairs":
        return answer.pairs()
    if shape == "mod_revisions":
        return answer.mod_revisions()
    return answer.kvs


def pairs_of(read: Snapshot) -> list[tuple[str, bytes]]:
    """The items of a :func:`snapshot` read with ``pairs=True`` (or of
    :func:`read_value`), which are ``(key, value)`` tuples, not the
    :class:`KeyValue` s :class:`Snapshot` is typed with (a cast: no check per item)."""
    return cast("list[tuple[str, bytes]]", read.items)


A = TypeVar("A")


def answer_as(kind: type[A], answer: object) -> A:
    """``answer`` (a transport's answer to one request, or one op's answer in a
    txn) as the ``kind`` that request is answered with (a :class:`Range`: a
    :class:`RangeResult`; a :class:`Txn`: a :class:`TxnResult`; a lease request:
    a :class:`~.protocol.LeaseResult`).  For answers outside the read hot path.

    :raises TypeError: it is another kind (a transport's bug).
    """
    if not isinstance(answer, kind):
        raise TypeError(f"expected a {kind.__name__} answer, got {type(answer).__name__}")
    return answer


def ranges_of(answer: TxnResult) -> list[RangeResult]:
    """The answers of a txn whose operations are all :class:`Range` s (what the read
    txns of the plans send): etcd answers each op with its own kind, in order, so
    they are all :class:`RangeResult` s (a cast: no check per answer)."""
    return cast("list[RangeResult]", answer.responses)


def read_tree(key: str, revision: int = 0) -> Plan[tuple[Any, int]]:
    """Plan: ``(value, revision)`` of ``key`` (:data:`ABSENT` when nothing is stored),
    decoded by :func:`link.etcd.codec.decode`; one request below :data:`PAGE_SIZE` keys
    (see :func:`read_value`).

    :param revision: the tree as it was at this revision (0: now); the revision
        returned is then ``revision``.
    """
    with codec.gc_paused():
        if key:
            read: Snapshot = yield from read_value(key, revision)
        else:  # the root: no key of its own
            read = yield from snapshot(key, pairs=True, revision=revision)
        if not read.items:
            return ABSENT, revision or read.revision
        if len(read.items) > PAUSE_AFTER:
            yield PAUSE
        return codec.decode(read.items, key), revision or read.revision


def read_value(key: str, revision: int = 0) -> Plan[Snapshot]:
    """Plan: the ``(key, value)`` pairs of the leaf at ``key`` and of every key below
    it, at one revision: a :class:`Snapshot` (``key`` must not be the root).

    One plain ``range`` of ``[key, key + '0')``, limited to :data:`PAGE_SIZE` keys
    (more pages pinned to its revision).  ``'0'`` is the byte after ``'/'``, so the
    range holds the key itself, then the *siblings* named ``key`` + a byte below
    ``'/'`` (``/a-b``, ``/a.b``: not ours, dropped), then every key below
    ``key + '/'``.  A leaf is thus one range request (not a txn), and so is a
    tree.  When the first page ends among siblings, the next pages start at
    ``key + '/'``.  A role that does not cover ``key`` itself (a prefix grant on
    ``key + '/'``) reads the range below it only.

    :raises EtcdPermissionDenied: the role covers neither, or only the range below
        ``key`` and nothing is stored there.
    """
    own = encode_key(key)
    prefix, end = below(key)
    try:
        first: RangeResult = yield Range(own, end, limit=PAGE_SIZE, revision=revision)
    except EtcdPermissionDenied:
        read: Snapshot = yield from snapshot(key, singles=[], pairs=True, revision=revision)
        if not read.items:
            raise
        return read
    items: list[Any] = first.pairs()
    if len(items) > 1 or (items and items[0][0] != key):
        items = _without_siblings(items, key)
    more = first.more
    if more:  # past PAGE_SIZE keys: the next pages, pinned to the first one's revision
        at = revision or first.revision
        start = encode_key(items[-1][0]) + b"\x00" if items else prefix
    while more:
        page: RangeResult = yield Range(max(start, prefix), end, limit=PAGE_SIZE, revision=at)
        batch = page.pairs()
        items.extend(batch)
        more = page.more
        if batch:
            start = encode_key(batch[-1][0]) + b"\x00"
    return Snapshot(first.revision, items)


def _without_siblings(items: list[tuple[str, bytes]], key: str) -> list[tuple[str, bytes]]:
    """``items`` (sorted as etcd sorts keys) without the keys that are neither ``key``
    nor below it: they sort together between the two."""
    inside = key + SEP
    skip = 1 if items[0][0] == key else 0
    stop = skip
    while stop < len(items) and not items[stop][0].startswith(inside):
        stop += 1
    if stop == skip:
        return items
    return items[:skip] + items[stop:]


def exists(key: str) -> Plan[bool]:
    """Plan: True when ``key`` is a leaf or has keys below it (one txn of
    ``count_only`` ranges; below only, for a role that does not cover ``key``)."""

    def count(checked: list[str]) -> Txn:
        ops: list[Op] = [Range(*below(key), count_only=True)]
        ops += [Range(encode_key(k), count_only=True) for k in checked]
        return Txn((), ops)

    answer: TxnResult
    answer, _ = yield from checkable(count, [key] if key else [])
    return any(r.count for r in answer.responses if isinstance(r, RangeResult))


def children(key: str) -> Plan[list[str]]:
    """Plan: the sorted names of the direct children of ``key`` (one ``keys_only`` read
    of the range below ``key``)."""
    base = key + SEP
    answer: TxnResult = yield read_txn(key, (), keys_only=True)
    read: Snapshot = yield from paged(answer, key, keys_only=True, items="pairs")
    return sorted({k[len(base) :].split(SEP, 1)[0] for k, _ in pairs_of(read)})


# -- delete -------------------------------------------------------------------


def delete(key: str) -> Plan[int]:
    """Plan: delete ``key`` and everything below it in one txn; returns how many keys,
    or :data:`DELETED_BEFORE_RETRY` (-1) when the answer came from a retry on another
    member that deleted nothing (the first attempt may have: nothing is stored now).

    A role that covers only the range below ``key`` (a prefix grant on
    ``key + '/'``) deletes that range alone (etcd refuses the txn that also
    deletes ``key``).

    :raises EtcdPermissionDenied: the role does not cover the range below ``key``.
    """
    ops: list[Op] = [DeleteRange(*below(key))]
    if key:
        ops.append(DeleteRange(encode_key(key)))
    try:
        answer: TxnResult = yield Txn((), ops)
    except EtcdPermissionDenied:
        if len(ops) == 1:
            raise
        answer = yield Txn((), ops[:1])
    deleted = sum(r.deleted for r in answer.responses if isinstance(r, DeleteRangeResult))
    if not deleted and answer.retried:
        return DELETED_BEFORE_RETRY
    return deleted


def checkable(
    build: Callable[[list[str]], Request],
    singles: Sequence[str],
    uncovered: set[str] | None = None,
) -> Plan[tuple[Any, list[str]]]:
    """Plan: send ``build(checked)`` for ``checked`` = ``singles`` (keys whose own
    leaf the request reads, compares or deletes: a path's ancestors, the path
    itself), leaving out the shallowest of them, one depth at a time, while etcd
    answers ``PERMISSION_DENIED`` (a role granted on a prefix below them).

    :param uncovered: one client's memory of keys its role was found not to cover:
        they are left out from the start, and the keys this call had to leave out
        are added (up to :data:`UNCOVERED_KEPT`), so that later writes skip the
        refused attempt (a refused write txn still costs etcd a raft round).  A
        role widened later is used fully by a new client.
    :returns: ``(answer, checked)``.
    :raises EtcdPermissionDenied: etcd refused the request with none of ``singles``
        (the role does not cover the path itself).
    """
    checked = [k for k in singles if k not in uncovered] if uncovered else list(singles)
    while True:
        try:
            answer = yield build(checked)
        except EtcdPermissionDenied:
            if not checked:
                raise
            top = min(k.count(SEP) for k in checked)
            checked = [k for k in checked if k.count(SEP) > top]
            continue
        if (
            uncovered is not None
            and len(checked) < len(singles)
            and len(uncovered) < UNCOVERED_KEPT
        ):
            uncovered.update(k for k in singles if k not in checked)
        return answer, checked


def applied_before(changes: Sequence[Change], lease: int, since: int, at: int) -> Plan[int]:
    """Plan, after a ``retried`` txn of ``changes`` whose compares failed: the revision
    at which an earlier attempt of that txn was applied, or 0 when it was not.

    One txn reads each key the changes put, as it was at revision ``at`` (the
    failed answer's).  The earlier attempt was applied when every one holds its
    value and ``lease``, all last changed at one revision after ``since`` (the
    revision the write was guarded by): one txn wrote them all after the read.
    Another writer that put exactly the same values in one txn in that window
    looks the same.
    """
    puts = [(key, value) for key, value in changes if value is not None]
    if not puts:
        return 0
    answer: TxnResult = yield Txn((), [Range(key, revision=at) for key, _ in puts])
    revisions = set()
    for (_, value), found in zip(puts, answer.responses, strict=True):
        kvs = found.kvs if isinstance(found, RangeResult) else []
        if len(kvs) != 1 or kvs[0].value != value or kvs[0].lease != lease:
            return 0
        revisions.add(kvs[0].mod_revision)
    revision = revisions.pop()
    return revision if not revisions and revision > since else 0


# -- replace ------------------------------------------------------------------


def replace(
    key: str,
    node: Node,
    ancestors: Sequence[str],
    limits: Limits,
    *,
    lease: int = 0,
    uncovered: set[str] | None = None,
) -> Plan[None]:
    """Plan: make ``key`` hold exactly ``node`` and delete any leaf at ``ancestors``.

    :param lease: the lease every key of ``node`` is attached to (0: none); a key
        that already holds its value under another lease is written again.
    :param uncovered: the client's memory of keys its role does not cover (see
        :func:`checkable`).

    A leaf (``node`` is ``bytes``) is one txn with no read.  A tree is read,
    diffed and written as described in the module docstring.

    :raises EtcdInvalidTree: a key and value exceed ``max_request_bytes``, or
        ``key`` has more than ``max_txn_ops - 2`` ancestors (before any request).
    :raises EtcdCompareFailed: other writers kept changing the subtree for
        :data:`WRITE_ATTEMPTS` attempts.
    :raises EtcdPartialWrite: a write of several txns failed after some were
        applied (the cause is chained).
    """
    if len(ancestors) + 2 > limits.max_txn_ops:
        raise EtcdInvalidTree(
            f"{key!r} is {len(ancestors) + 1} segments deep; a txn guarding it and its "
            f"ancestors needs {len(ancestors) + 2} operations (max_txn_ops="
            f"{limits.max_txn_ops})",
            key=key,
        )
    if isinstance(node, bytes):
        check_leaf_sizes([(key, node)], limits.max_request_bytes)
        yield from checkable(
            lambda checked: Txn((), _leaf_ops(key, node, checked, lease)), ancestors, uncovered
        )
        return None
    leaves = dict(iter_flatten(node, key))
    check_leaf_sizes(leaves.items(), limits.max_request_bytes)
    for attempt in range(WRITE_ATTEMPTS):
        if attempt:
            yield Sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
        done = yield from _replace_once(key, leaves, ancestors, limits, lease, uncovered)
        if done:
            return None
    raise EtcdCompareFailed(
        f"other writers kept changing {key!r}; gave up after {WRITE_ATTEMPTS} attempts "
        "(a write of several txns may have been partly applied)",
        key=key,
    )


def _leaf_ops(key: str, value: bytes, ancestors: Sequence[str], lease: int = 0) -> list[Op]:
    """Put the leaf, delete everything below it and the leaves at its ancestors."""
    ops: list[Op] = [Put(encode_key(key), value, lease), DeleteRange(*below(key))]
    ops += [DeleteRange(encode_key(ancestor)) for ancestor in ancestors]
    return ops


def _op(change: Change, lease: int = 0) -> Op:
    key, value = change
    return DeleteRange(key) if value is None else Put(key, value, lease)


def diff(current: Mapping[str, bytes | None], leaves: dict[str, bytes]) -> list[Change]:
    """The changes that turn ``current`` into ``leaves``, sorted as etcd sorts keys (by
    their bytes: a key that is not UTF-8 sorts apart from its ``str``): puts of new
    or changed values, deletes of keys ``leaves`` does not have.  A ``None`` value
    in ``current`` (a key that must be written again whatever it holds) differs
    from every value of ``leaves``."""
    changes: list[Change] = [(encode_key(k), v) for k, v in leaves.items() if current.get(k) != v]
    changes += [(encode_key(k), None) for k in current if k not in leaves]
    changes.sort()  # keys are unique: the values are never compared
    return changes


def batches(changes: list[Change], limits: Limits) -> list[list[Change]]:
    """Consecutive changes in txns of at most ``max_txn_ops`` ops and
    ``max_request_bytes`` bytes (less :data:`REQUEST_OVERHEAD_BYTES` for framing
    and compares)."""
    budget = limits.max_request_bytes - REQUEST_OVERHEAD_BYTES
    out: list[list[Change]] = [[]]
    size = 0
    for change in changes:
        cost = len(change[0]) + len(change[1] or b"") + OP_OVERHEAD_BYTES
        if out[-1] and (len(out[-1]) >= limits.max_txn_ops or size + cost > budget):
            out.append([])
            size = 0
        out[-1].append(change)
        size += cost
    return out


def batch_txn(batch: list[Change], key: str, revision: int, lease: int = 0) -> Txn:
    """The txn of one batch of a large write: its changes, guarded by compares on
    only the keys it covers (keys below ``key`` as one range from the batch's first
    to its last key; others, the subtree's own key and ancestors, one by one), so
    the txns of one write are independent of each other."""
    inside = encode_key(key + SEP)
    compares = [unchanged_since(revision, k) for k, _ in batch if not k.startswith(inside)]
    span = [k for k, _ in batch if k.startswith(inside)]
    if span:
        compares.append(unchanged_since(revision, span[0], span[-1] + b"\x00"))
    return Txn(compares, [_op(change, lease) for change in batch])


def _replace_once(
    key: str,
    leaves: dict[str, bytes],
    ancestors: Sequence[str],
    limits: Limits,
    lease: int,
    uncovered: set[str] | None = None,
) -> Plan[bool]:
    """One attempt: returns True when written, False when a compare failed."""
    answer: TxnResult
    answer, singles = yield from checkable(
        lambda checked: read_txn(key, checked), [k for k in (*ancestors, key) if k], uncovered
    )
    read: Snapshot = yield from paged(answer, key)
    # a key held under another lease is written again, attached to this one
    current = {kv.key: (kv.value if kv.lease == lease else None) for kv in read.items}
    if len(current) > PAUSE_AFTER:
        yield PAUSE
    changes = diff(current, leaves)
    if not changes:
        return True
    if len(changes) > PAUSE_AFTER:
        yield PAUSE
    cut = batches(changes, limits)
    revision = read.revision
    if len(cut) == 1:
        compares = [unchanged_since(revision, encode_key(k)) for k in singles]
        compares.append(unchanged_since(revision, *below(key)))
        result: TxnResult = yield Txn(compares, [_op(change, lease) for change in changes])
        return result.succeeded
    count = len(changes)
    del changes
    txns = (batch_txn(batch, key, revision, lease) for batch in cut)  # built as they are sent
    answers = yield Concurrent(txns, TXNS_IN_FLIGHT, count)
    del cut
    written = _applied(key, answers)
    if written is None:
        return False
    return (yield from _verify(key, leaves, revision, written))


def _applied(key: str, answers: list[TxnResult | EtcdError]) -> set[int] | None:
    """The revisions of the applied txns; None when a compare failed.

    :raises EtcdError: the first error, when no txn was applied.
    :raises EtcdPartialWrite: when some were applied before an error.
    """
    written: set[int] = set()
    applied = 0
    error: EtcdError | None = None
    conflict = False
    for answer in answers:
        if isinstance(answer, EtcdError):
            error = error or answer
        elif answer.succeeded:
            applied += 1
            written.add(answer.revision)
        else:
            conflict = True
    if error is not None:
        if not applied:
            raise error
        raise EtcdPartialWrite(
            f"write of {key!r} stopped after {applied} of {len(answers)} txns; "
            f"the subtree holds a mix of old and new keys: {error}",
            applied=applied,
            total=len(answers),
            endpoints=error.endpoints,
            key=key,
        ) from error
    return None if conflict else written


def _verify(key: str, leaves: dict[str, bytes], revision: int, written: set[int]) -> Plan[bool]:
    """After a write of several txns: one ``keys_only`` read shows exactly our keys,
    each last changed by one of our txns or left as it was at ``revision`` (where
    it already held our value).  Anything else means another writer got in
    between: the write starts again, so the last writer to verify leaves its whole
    tree, never a mix of two."""
    answer: TxnResult
    answer, _ = yield from checkable(lambda checked: read_txn(key, checked, keys_only=True), [key])
    read: Snapshot = yield from paged(answer, key, keys_only=True, items="mod_revisions")
    if len(read.items) != len(leaves):
        return False
    found = cast("list[tuple[str, int]]", read.items)
    return all(k in leaves and (rev <= revision or rev in written) for k, rev in found)
