"""Guarded v3 writes: conditional replace, several paths at once, append (no I/O).

Plans in the style of :mod:`.engine` (same steps, same drivers), for the writes
whose point is atomicity, so each is **one txn** guarded by compares on what it
read; one that would need several raises :class:`~link.etcd.errors.EtcdInvalidTree`
before anything is written (a conditional write that could be half applied
would promise nothing):

- :func:`replace_if`: read the tree, let a function decide what to write
  (``create``, ``compare_and_swap``, ``transform``, ``set(if_revision=)``), write
  it guarded by the read, read again on a conflict;
- :func:`replace_many`: several paths in one txn (``update``);
- :func:`append`: a new last item of a list, safe against concurrent appenders.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ... import codec
from ...codec import Node
from ...errors import EtcdCompareFailed, EtcdInvalidTree, EtcdLockLost, EtcdTxnTooLarge
from ...paths import SEP, below, encode_key
from ..base import KeyValue, check_leaf_sizes
from .engine import (
    PAGE_SIZE,
    Call,
    Change,
    Limits,
    Plan,
    Sleep,
    _op,
    applied_before,
    batches,
    checkable,
    diff,
    ranges_of,
)
from .protocol import (
    CREATE,
    EQUAL,
    LESS,
    MOD,
    Compare,
    Op,
    Range,
    Txn,
    TxnResult,
    unchanged_since,
)

#: Attempts of a guarded write whose compares keep failing (concurrent writers).
GUARDED_ATTEMPTS = 64


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: What a decide function returns to write nothing.
KEEP: Final = _Keep()


@dataclass(frozen=True, slots=True)
class Held:
    """The condition "this holder still owns the lock" that a guarded write adds to
    its txns (a :class:`~link.etcd.recipes.lock.Lock`'s or an election's ``guard``):
    the holder's key ``key`` exists with create revision ``token``.

    :param key: the holder's etcd key (``<name>/<lease id in hex>``), as bytes.
    :param token: the key's create revision (the fencing token).
    :param name: the lock's etcd name, for messages.
    """

    key: bytes
    token: int
    name: str

    def compare(self) -> Compare:
        """The txn compare: ``create_revision(key) == token`` (false once it is deleted)."""
        return Compare(self.key, CREATE, EQUAL, self.token)

    def lost(self) -> EtcdLockLost:
        """The error of a write refused because the compare failed."""
        return EtcdLockLost(
            f"the lock {self.name!r} (token {self.token}) is no longer held: its key is "
            "gone (released, lease expired or revoked); nothing was written",
            key=self.name,
        )


def if_absent(node: Node) -> Callable[[list[KeyValue]], Any]:
    """The decide function of ``create``: ``node`` when nothing is stored, else KEEP."""
    return lambda items: KEEP if items else node


def if_equal(key: str, expected: Node, node: Node) -> Callable[[list[KeyValue]], Any]:
    """The decide function of ``compare_and_swap``: ``node`` when the tree stored at
    ``key`` equals ``expected`` (encoded), else KEEP.  The stored tree is decoded and
    encoded again, so list positions come out dense (a list with a consumed item
    still equals its items) and types stay exact (``1``, ``1.0``, ``True`` differ)."""
    want = dict(codec.flatten(expected, key))

    def decide(items: list[KeyValue]) -> Any:
        if not items:
            return KEEP
        held = dict(codec.flatten(codec.encode(codec.decode(items, key)), key))
        return node if held == want else KEEP

    return decide


def backoff(attempt: int) -> Sleep:
    """Jittered pause before attempt ``attempt`` (1, 2, …) of a contended write:
    short, since a guarded write is one txn and contention clears fast."""
    return Sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


def _at_or_below(kv: KeyValue, key: str) -> bool:
    return kv.key == key or kv.key.startswith(key + SEP)


def _read_ops(key: str, singles: Sequence[str], since: int | None) -> list[Op]:
    prefix, end = below(key)
    ops: list[Op] = [Range(encode_key(single)) for single in singles]
    ops.append(Range(prefix, end, limit=PAGE_SIZE))
    if since is not None:  # the same keys as they were at `since`, in the same txn
        ops.append(Range(encode_key(key), revision=since, keys_only=True))
        ops.append(Range(prefix, end, revision=since, keys_only=True, limit=PAGE_SIZE))
    return ops


def _changed_since(tree: list[KeyValue], before: list[KeyValue], since: int) -> bool:
    """True when a key was created, changed or deleted after revision ``since``."""
    return {kv.key for kv in tree} != {kv.key for kv in before} or any(
        kv.mod_revision > since for kv in tree
    )


def _guard(singles: Sequence[str], key: str, revision: int) -> list[Compare]:
    compares = [unchanged_since(revision, encode_key(single)) for single in singles]
    compares.append(unchanged_since(revision, *below(key)))
    return compares


def _too_large(key: str) -> EtcdInvalidTree:
    return EtcdInvalidTree(
        f"a guarded write of {key!r} must fit in one txn, and {key!r} holds more than "
        f"{PAGE_SIZE} keys",
        key=key,
    )


def _one_txn(key: str, compares: int, changes: list[Change], limits: Limits) -> None:
    """Refuse, before anything is written, a guarded write that needs several txns."""
    if (
        compares > limits.max_txn_ops
        or len(changes) > limits.max_txn_ops
        or len(batches(changes, limits)) > 1
    ):
        raise EtcdTxnTooLarge(
            f"a guarded write of {key!r} must fit in one txn ({len(changes)} changes, "
            f"{compares} compares; max_txn_ops={limits.max_txn_ops}, max_request_bytes="
            f"{limits.max_request_bytes})",
            key=key,
        )


def _current(items: Sequence[KeyValue], lease: int) -> dict[str, bytes | None]:
    """What the diff starts from: a key held under another lease counts as changed."""
    return {kv.key: (kv.value if kv.lease == lease else None) for kv in items}


def replace_if(
    key: str,
    ancestors: Sequence[str],
    limits: Limits,
    decide: Callable[[list[KeyValue]], Any],
    *,
    lease: int = 0,
    since: int | None = None,
    attempts: int = GUARDED_ATTEMPTS,
    held: Held | None = None,
) -> Plan[tuple[bool, int]]:
    """Plan: read the tree at ``key``, write what ``decide`` says, in one guarded txn.

    :param decide: called (through a :class:`Call` step) with the tree's stored
        key-values (``key`` and below, sorted; ``[]`` when nothing is stored);
        returns the :data:`~link.etcd.codec.Node` to store at ``key``, or
        :data:`KEEP` to write nothing.  It may raise; the plan ends with it.
    :param since: with a revision, the write happens only if nothing at or below
        ``key`` was created, changed or deleted after it (read in the same txn as
        the current tree); else :class:`EtcdCompareFailed`.
    :returns: ``(written, revision)``: whether a txn was applied (a node equal to
        what is stored counts as written, with nothing sent), and the revision of
        the write or of the read.
    :raises EtcdTxnTooLarge: the write would need more than one txn (nothing
        written).
    :raises EtcdInvalidTree: a key and value exceed ``max_request_bytes``
        (nothing written).
    :raises EtcdCompareFailed: ``since`` was passed, or other writers kept
        winning for ``attempts`` attempts.
    :raises EtcdCompacted: ``since`` is older than etcd's compaction.
    :raises EtcdLockLost: ``held`` was given and its compare failed, in the read's
        txn or in the write's (nothing written).
    """
    singles = [k for k in (*ancestors, key) if k]
    holding = [] if held is None else [held.compare()]
    for attempt in range(attempts):
        if attempt:
            yield backoff(attempt)
        answer: TxnResult
        answer, singles = yield from checkable(  # prefix-scoped roles: see engine
            lambda checked: Txn(holding, _read_ops(key, checked, since)), singles
        )
        if held is not None and not answer.succeeded:
            raise held.lost()
        ranges = ranges_of(answer)
        if any(r.more for r in ranges):
            raise _too_large(key)
        count = len(singles) + 1
        items = [kv for r in ranges[:count] for kv in r.kvs]
        tree = [kv for kv in items if _at_or_below(kv, key)]
        if since is not None and _changed_since(
            tree, [kv for r in ranges[count:] for kv in r.kvs], since
        ):
            raise EtcdCompareFailed(f"{key!r} changed after revision {since}", key=key)
        node = yield Call(decide, tree)
        if node is KEEP:
            return False, answer.revision
        leaves = dict(codec.iter_flatten(node, key))
        check_leaf_sizes(leaves.items(), limits.max_request_bytes)
        changes = diff(_current(items, lease), leaves)
        if not changes:
            return True, answer.revision
        compares = _guard(singles, key, answer.revision) + holding
        _one_txn(key, len(compares), changes, limits)
        result: TxnResult = yield Txn(compares, [_op(change, lease) for change in changes])
        if result.succeeded:
            return True, result.revision
        if result.retried:  # our lost first attempt may be why the compares failed
            applied = yield from applied_before(changes, lease, answer.revision, result.revision)
            if applied:
                return True, applied
        if since is not None and held is None:  # with held: the next read tells which failed
            raise EtcdCompareFailed(f"{key!r} changed after revision {since}", key=key)
    raise EtcdCompareFailed(
        f"other writers kept changing {key!r}; gave up after {attempts} attempts", key=key
    )


def replace_many(entries: Sequence[tuple[str, Node, Sequence[str]]], limits: Limits) -> Plan[int]:
    """Plan: store each ``(key, node, ancestors)`` of ``entries`` in one txn guarded
    by one read of every subtree (``update`` of several paths).  No key may be
    another's ancestor (the caller writes those one by one).

    :returns: the revision of the write (or of the read when nothing changed).
    :raises EtcdTxnTooLarge: the whole does not fit one txn (nothing written).
    :raises EtcdCompareFailed: other writers kept winning.
    """
    leaves: dict[str, bytes] = {}
    for key, node, _ in entries:
        leaves.update(codec.iter_flatten(node, key))
    check_leaf_sizes(leaves.items(), limits.max_request_bytes)
    singles = sorted({k for key, _, ancestors in entries for k in (*ancestors, key) if k})
    keys = [key for key, _, _ in entries]
    if len(singles) + len(keys) > limits.max_txn_ops:  # the read, and the compares
        raise EtcdTxnTooLarge(
            f"{len(keys)} paths need {len(singles) + len(keys)} ranges and compares: more "
            f"than one txn holds (max_txn_ops={limits.max_txn_ops})",
            key=keys[0],
        )
    for attempt in range(GUARDED_ATTEMPTS):
        if attempt:
            yield backoff(attempt)
        answer: TxnResult
        answer, singles = yield from checkable(  # prefix-scoped roles: see engine
            lambda checked: Txn(
                (),
                [Range(encode_key(single)) for single in checked]
                + [Range(*below(key), limit=PAGE_SIZE) for key in keys],
            ),
            singles,
        )
        ranges = ranges_of(answer)
        if any(r.more for r in ranges):
            raise _too_large(keys[0])
        items = [kv for r in ranges for kv in r.kvs]
        changes = diff(_current(items, 0), leaves)
        if not changes:
            return answer.revision
        compares = [unchanged_since(answer.revision, encode_key(s)) for s in singles]
        compares += [unchanged_since(answer.revision, *below(key)) for key in keys]
        _one_txn(keys[0], len(compares), changes, limits)
        result: TxnResult = yield Txn(compares, [_op(change) for change in changes])
        if result.succeeded:
            return result.revision
        if result.retried:  # our lost first attempt may be why the compares failed
            applied = yield from applied_before(changes, 0, answer.revision, result.revision)
            if applied:
                return applied
    raise EtcdCompareFailed(
        f"other writers kept changing {', '.join(map(repr, keys))}; gave up after "
        f"{GUARDED_ATTEMPTS} attempts",
        key=keys[0],
    )


def append(
    key: str, node: Node, ancestors: Sequence[str], limits: Limits, *, lease: int = 0
) -> Plan[str]:
    """Plan: store ``node`` as the new last item of the list at ``key``.

    One read finds the last position (a ``keys_only`` range of the list, sorted
    descending, limit 1); one txn writes the item at the next position, guarded
    by "no key exists there yet" and by the list key and ancestors being as read.
    Concurrent appenders that pick the same position: one wins, the others read
    again.  A missing path becomes a list; an empty list's marker is deleted.

    :returns: the new item's position segment (20 digits).
    :raises EtcdInvalidTree: ``key`` holds a dict or a leaf (not a list), or the
        item needs more than one txn (nothing written).
    """
    singles = [k for k in (*ancestors, key) if k]
    prefix, end = below(key)
    for attempt in range(GUARDED_ATTEMPTS):
        if attempt:
            yield backoff(attempt)
        answer: TxnResult
        answer, singles = yield from checkable(  # prefix-scoped roles: see engine
            lambda checked: Txn(
                (),
                [Range(encode_key(single)) for single in checked]
                + [Range(prefix, end, limit=1, keys_only=True, descending=True)],
            ),
            singles,
        )
        ranges = ranges_of(answer)
        own = [kv for r in ranges[:-1] for kv in r.kvs if kv.key == key]
        if own and own[0].value != codec.EMPTY_LIST:
            held = "a dict" if own[0].value == codec.EMPTY_DICT else "a leaf"
            raise EtcdInvalidTree(f"{key!r} holds {held}, not a list", key=key)
        last = ranges[-1].kvs
        index = 0
        if last:
            segment = last[0].key[len(key) + 1 :].split(SEP, 1)[0]
            if not codec.is_position(segment):
                raise EtcdInvalidTree(f"{key!r} holds a dict, not a list", key=key)
            index = int(segment) + 1
        position = codec.position(index)
        item = f"{key}{SEP}{position}"
        leaves = codec.flatten(node, item)
        check_leaf_sizes(leaves, limits.max_request_bytes)
        # ancestor leaves and the empty list's marker go; the item's keys come
        changes: list[Change] = [(encode_key(kv.key), None) for r in ranges[:-1] for kv in r.kvs]
        changes += [(encode_key(k), v) for k, v in leaves]
        compares = [unchanged_since(answer.revision, encode_key(s)) for s in singles]
        compares.append(Compare(encode_key(item), MOD, LESS, 1))  # nothing there yet
        item_prefix, item_end = below(item)
        compares.append(Compare(item_prefix, MOD, LESS, 1, item_end))
        _one_txn(key, len(compares), changes, limits)
        result: TxnResult = yield Txn(compares, [_op(change, lease) for change in changes])
        if result.succeeded:
            return position
        if result.retried and (
            yield from applied_before(changes, lease, answer.revision, result.revision)
        ):
            return position
    raise EtcdCompareFailed(
        f"other appenders kept winning at {key!r}; gave up after {GUARDED_ATTEMPTS} attempts",
        key=key,
    )
