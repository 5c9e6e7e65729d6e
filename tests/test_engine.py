"""The v3 tree engine's plans, driven by hand: no etcd needed.

A plan is a generator of steps (a protocol request, ``Concurrent`` or ``Sleep``);
these tests look at each step and send it a constructed answer.
"""

from collections.abc import Iterable, Mapping
from itertools import pairwise
from types import SimpleNamespace
from typing import Any, overload

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from link.etcd import codec
from link.etcd.backends.base import (
    ABSENT,
    OP_OVERHEAD_BYTES,
    REQUEST_OVERHEAD_BYTES,
    KeyValue,
    Snapshot,
)
from link.etcd.backends.v3 import engine, guarded
from link.etcd.backends.v3.engine import (
    PAGE_SIZE,
    PAUSE,
    TXNS_IN_FLIGHT,
    WRITE_ATTEMPTS,
    Change,
    Concurrent,
    Limits,
    Sleep,
)
from link.etcd.backends.v3.protocol import (
    LESS,
    MOD,
    Compare,
    DeleteRange,
    DeleteRangeResult,
    Put,
    Range,
    RangeResult,
    Txn,
    TxnResult,
    key_values,
)
from link.etcd.codec import Node
from link.etcd.errors import (
    EtcdCompareFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdPartialWrite,
    EtcdPermissionDenied,
)
from link.etcd.paths import below, decode_key, encode_key, range_end

from .strategies import json_documents

FAST = settings(max_examples=60, deadline=None)

# -- helpers: send a plan an answer -----------------------------------------


def send(plan: Any, answer: Any = None) -> Any:
    """The plan's next step; fails the test when the plan returns instead."""
    try:
        step = plan.send(answer)
        while step is PAUSE:  # a pause for async drivers: no answer to give
            step = plan.send(None)
    except StopIteration as stop:  # pragma: no cover - a failure path
        pytest.fail(f"plan returned {stop.value!r} where a step was expected")
    if isinstance(step, Concurrent):  # its requests may come as an iterator: keep a list
        step = Concurrent(list(step.requests), step.limit)
    return step


def finish(plan: Any, answer: Any = None) -> Any:
    """Send the last answer; the plan must return, and this is what it returned."""
    try:
        step = plan.send(answer)
        while step is PAUSE:
            step = plan.send(None)
    except StopIteration as stop:
        return stop.value
    pytest.fail(f"plan yielded {step!r} where it should have returned")


def unchanged(revision: int, key: bytes, end: bytes = b"") -> Compare:
    """The compare the engine guards writes with, spelled out (MOD LESS revision + 1)."""
    return Compare(key, MOD, LESS, revision + 1, end)


def kvs(store: Mapping[str, bytes], mod: int = 1) -> list[KeyValue]:
    """KeyValues of ``store`` in etcd's (byte) order, all last modified at ``mod``."""
    return [KeyValue(k, store[k], mod) for k in sorted(store, key=encode_key)]


def answer_range(op: Range, items: Iterable[KeyValue], revision: int) -> RangeResult:
    """Answer one range as etcd does: keys in byte order, at most ``limit`` of them
    (``more`` when there were more), ``count`` of the whole range."""
    ordered = sorted(items, key=lambda kv: encode_key(kv.key))
    if op.range_end:
        found = [kv for kv in ordered if op.key <= encode_key(kv.key) < op.range_end]
    else:
        found = [kv for kv in ordered if encode_key(kv.key) == op.key]
    count, more = len(found), bool(op.limit) and len(found) > op.limit
    if more:
        found = found[: op.limit]
    if op.keys_only:
        found = [KeyValue(kv.key, b"", kv.mod_revision) for kv in found]
    return RangeResult(revision, [] if op.count_only else found, more=more, count=count)


@overload
def answer_ranges(txn: Txn, items: Iterable[KeyValue], revision: int) -> TxnResult: ...
@overload
def answer_ranges(txn: Range, items: Iterable[KeyValue], revision: int) -> RangeResult: ...
def answer_ranges(
    txn: Txn | Range, items: Iterable[KeyValue], revision: int
) -> TxnResult | RangeResult:
    """Answer a read txn of ranges, or one range, from ``items``."""
    items = list(items)
    if isinstance(txn, Range):
        return answer_range(txn, items, revision)
    responses: list[Any] = []
    for op in txn.success:
        assert isinstance(op, Range)
        responses.append(answer_range(op, items, revision))
    return TxnResult(revision, True, responses)


def txns_of(step: Concurrent) -> list[Txn]:
    """The requests of a Concurrent step of writes: each one is a txn."""
    requests = list(step.requests)
    assert all(isinstance(txn, Txn) for txn in requests), requests
    return [txn for txn in requests if isinstance(txn, Txn)]


def below_range(answer: TxnResult) -> RangeResult:
    """The answer to a read txn's last range (the one below the key)."""
    last = answer.responses[-1]
    assert isinstance(last, RangeResult)
    return last


def read_txn(key: str, singles: list[str], *, keys_only: bool = False) -> Txn:
    """The read txn the engine sends for ``key`` (ranges of ``singles``, then below)."""
    prefix, end = below(key)
    ops = [Range(encode_key(s), keys_only=keys_only) for s in singles]
    ops.append(Range(prefix, end, limit=PAGE_SIZE, keys_only=keys_only))
    return Txn((), ops)


def assert_txn(step: Any, compare: list[Compare], success: list[Any]) -> None:
    assert isinstance(step, Txn)
    assert list(step.compare) == compare
    assert list(step.success) == success
    assert list(step.failure) == []


def op_of(change: tuple[bytes, bytes | None]) -> Any:
    key, value = change
    return DeleteRange(key) if value is None else Put(key, value)


def apply(store: dict[str, bytes], ops: Iterable[Any]) -> dict[str, bytes]:
    """``store`` after single-key puts and deletes."""
    out = dict(store)
    for op in ops:
        assert op.__class__ in (Put, DeleteRange)
        assert not getattr(op, "range_end", b"")
        if isinstance(op, Put):
            out[decode_key(op.key)] = op.value
        else:
            out.pop(decode_key(op.key), None)
    return out


# -- replace: a leaf ----------------------------------------------------------


def test_replace_leaf_is_one_txn_without_read() -> None:
    plan = engine.replace("/a/b/c", b"v", ["/a", "/a/b"], Limits())
    step = send(plan)
    assert_txn(
        step,
        [],
        [
            Put(b"/a/b/c", b"v"),
            DeleteRange(b"/a/b/c/", b"/a/b/c0"),
            DeleteRange(b"/a"),
            DeleteRange(b"/a/b"),
        ],
    )
    assert not any(isinstance(op, Range) for op in step.success)
    assert finish(plan, TxnResult(9, True, [])) is None


def test_replace_leaf_without_ancestors() -> None:
    plan = engine.replace("/k", b"", [], Limits())
    assert_txn(send(plan), [], [Put(b"/k", b""), DeleteRange(b"/k/", b"/k0")])
    assert finish(plan, TxnResult(2, True, [])) is None


def test_replace_leaf_exactly_at_max_txn_ops_is_still_one_txn() -> None:
    ancestors = ["/a", "/a/b"]  # put + delete below + 2 ancestors = 4 ops
    step = send(engine.replace("/a/b/c", b"v", ancestors, Limits(max_txn_ops=4)))
    assert not step.compare
    assert len(step.success) == 4
    assert isinstance(step.success[0], Put)


@pytest.mark.parametrize("node", [b"v", {"x": b"1"}])
def test_replace_deeper_than_max_txn_ops_is_refused_before_any_request(node: Any) -> None:
    # a txn guarding the key and its ancestors would need len(ancestors) + 2 operations
    ancestors = ["/a", "/a/b", "/a/b/c"]
    plan = engine.replace("/a/b/c/d", node, ancestors, Limits(max_txn_ops=4))
    with pytest.raises(EtcdInvalidTree, match="max_txn_ops=4"):
        next(plan)


def test_replace_leaf_too_large_is_refused_before_any_request() -> None:
    limits = Limits(max_request_bytes=REQUEST_OVERHEAD_BYTES + 100)
    plan = engine.replace("/k", b"x" * 100, [], limits)
    with pytest.raises(EtcdInvalidTree):
        next(plan)
    tree = engine.replace("/k", {"a": b"x" * 100}, [], limits)
    with pytest.raises(EtcdInvalidTree):
        next(tree)


# -- replace: a tree ----------------------------------------------------------

TREE: Node = {"a": b"1", "b": {"c": b"2"}}


def test_replace_tree_reads_first() -> None:
    plan = engine.replace("/t", TREE, ["/r"], Limits())
    assert send(plan) == Txn(
        (),
        [Range(b"/r"), Range(b"/t"), Range(b"/t/", b"/t0", limit=PAGE_SIZE)],
    )


def test_replace_tree_in_one_txn_compares_everything_and_writes_the_diff() -> None:
    plan = engine.replace("/t", TREE, ["/r"], Limits())
    read = send(plan)
    current = [
        KeyValue("/r", b"ancestor leaf", 3),
        KeyValue("/t/a", b"1", 4),  # unchanged: not written
        KeyValue("/t/b/c", b"old", 6),
        KeyValue("/t/old", b"x", 5),
    ]
    write = send(plan, answer_ranges(read, current, 10))
    assert_txn(
        write,
        [
            unchanged(10, b"/r"),
            unchanged(10, b"/t"),
            unchanged(10, b"/t/", b"/t0"),
        ],
        [DeleteRange(b"/r"), Put(b"/t/b/c", b"2"), DeleteRange(b"/t/old")],
    )
    assert finish(plan, TxnResult(11, True, [])) is None


def test_replace_tree_over_a_leaf_deletes_the_leaf() -> None:
    plan = engine.replace("/t", {"x": b"1"}, [], Limits())
    read = send(plan)
    write = send(plan, answer_ranges(read, [KeyValue("/t", b"leaf", 2)], 7))
    assert list(write.success) == [DeleteRange(b"/t"), Put(b"/t/x", b"1")]
    assert finish(plan, TxnResult(8, True, [])) is None


def test_replace_tree_at_the_root_compares_only_the_range() -> None:
    plan = engine.replace("", {"a": b"1"}, [], Limits())
    read = send(plan)
    assert read == Txn((), [Range(b"/", b"0", limit=PAGE_SIZE)])
    write = send(plan, answer_ranges(read, [], 3))
    assert_txn(write, [unchanged(3, b"/", b"0")], [Put(b"/a", b"1")])
    assert finish(plan, TxnResult(4, True, [])) is None


def test_replace_tree_already_stored_writes_nothing() -> None:
    plan = engine.replace("/t", TREE, [], Limits())
    read = send(plan)
    stored = codec.flatten(TREE, "/t")
    assert finish(plan, answer_ranges(read, [KeyValue(k, v, 2) for k, v in stored], 9)) is None


def test_replace_tree_failed_compare_sleeps_then_reads_again() -> None:
    plan = engine.replace("/t", TREE, [], Limits())
    read = send(plan)
    write = send(plan, answer_ranges(read, [], 10))
    assert isinstance(write, Txn)
    assert write.compare
    pause = send(plan, TxnResult(12, False, []))
    assert isinstance(pause, Sleep)
    assert 0 <= pause.seconds <= 0.5
    again = send(plan, None)
    assert again == read
    # this time another writer's key is there: the new write deletes it too
    write = send(plan, answer_ranges(again, [KeyValue("/t/z", b"theirs", 12)], 12))
    assert DeleteRange(b"/t/z") in write.success
    assert write.compare[-1] == unchanged(12, b"/t/", b"/t0")
    assert finish(plan, TxnResult(13, True, [])) is None


def fail_every_write(plan: Any, step: Any, seen: dict[str, int]) -> None:
    """Drive ``plan`` from ``step``, answering every write txn with a failed compare
    (the reads find nothing); counts its reads and sleeps in ``seen``.  Returns only
    by the plan raising."""
    while True:
        if isinstance(step, Sleep):
            seen["sleeps"] += 1
            assert 0 <= step.seconds <= min(0.5, 0.005 * 2 ** seen["sleeps"])
            step = plan.send(None)
        elif not step.compare:  # a read
            seen["reads"] += 1
            step = plan.send(answer_ranges(step, [], 100 + seen["reads"]))
        else:
            step = plan.send(TxnResult(200 + seen["reads"], False, []))


def test_replace_tree_gives_up_after_write_attempts() -> None:
    plan = engine.replace("/t", TREE, [], Limits())
    seen = {"reads": 0, "sleeps": 0}
    step = send(plan)
    with pytest.raises(EtcdCompareFailed) as failed:
        fail_every_write(plan, step, seen)
    assert seen["reads"] == WRITE_ATTEMPTS
    assert seen["sleeps"] == WRITE_ATTEMPTS - 1
    assert failed.value.key == "/t"


# -- diff and batches ---------------------------------------------------------

keys = st.text(max_size=6).map(lambda s: "/t/" + s)
values = st.binary(max_size=6)


@FAST
@given(st.dictionaries(keys, values, max_size=12), st.dictionaries(keys, values, max_size=12))
def test_diff_turns_current_into_leaves(
    current: dict[str, bytes], leaves: dict[str, bytes]
) -> None:
    raw = engine.diff(current, leaves)
    assert [k for k, _ in raw] == sorted(k for k, _ in raw)  # etcd's order: by bytes
    changes = [(decode_key(k), v) for k, v in raw]
    changed = [k for k, _ in changes]
    assert len(set(changed)) == len(changed)
    result = dict(current)
    for key, value in changes:
        if value is None:
            assert key in current
            assert key not in leaves
            del result[key]
        else:
            assert current.get(key) != value
            result[key] = value
    assert result == leaves
    unchanged_keys = {k for k in current if current[k] == leaves.get(k)}
    assert unchanged_keys.isdisjoint(changed)


def test_diff_example() -> None:
    current = {"/t/a": b"1", "/t/b": b"2", "/t/c": b"3"}
    leaves = {"/t/d": b"4", "/t/b": b"2", "/t/a": b"one"}
    assert engine.diff(current, leaves) == [
        (b"/t/a", b"one"),
        (b"/t/c", None),
        (b"/t/d", b"4"),
    ]


def cost(change: tuple[bytes, bytes | None]) -> int:
    return len(change[0]) + len(change[1] or b"") + OP_OVERHEAD_BYTES


changes_lists = st.lists(
    st.tuples(st.binary(min_size=1, max_size=10), st.none() | st.binary(max_size=120)),
    max_size=30,
)
small_limits = st.builds(
    Limits,
    max_txn_ops=st.integers(1, 6),
    max_request_bytes=st.integers(REQUEST_OVERHEAD_BYTES + 1, REQUEST_OVERHEAD_BYTES + 400),
)


@FAST
@given(changes_lists, small_limits)
def test_batches_keep_order_and_limits(
    changes: list[tuple[bytes, bytes | None]], limits: Limits
) -> None:
    cut = engine.batches(changes, limits)
    assert [change for batch in cut for change in batch] == changes
    budget = limits.max_request_bytes - REQUEST_OVERHEAD_BYTES
    for batch in cut:
        assert len(batch) <= limits.max_txn_ops
        if changes:
            assert batch, "no empty batch when there are changes"
        if len(batch) > 1:
            assert sum(map(cost, batch)) <= budget
    # greedy: a batch is closed only when the next change would not fit
    for batch, following in pairwise(cut):
        full = len(batch) >= limits.max_txn_ops
        assert full or sum(map(cost, batch)) + cost(following[0]) > budget


def test_batches_example() -> None:
    changes: list[Change] = [(f"/t/{i}".encode(), b"v") for i in range(5)]
    assert engine.batches(changes, Limits(max_txn_ops=2)) == [
        changes[0:2],
        changes[2:4],
        changes[4:5],
    ]
    # each change costs len('/t/0') + 1 + OP_OVERHEAD_BYTES: room for two per txn
    each = cost(changes[0])
    limits = Limits(max_request_bytes=REQUEST_OVERHEAD_BYTES + 2 * each + 1)
    assert [len(b) for b in engine.batches(changes, limits)] == [2, 2, 1]
    # too large alone: a batch of its own
    big: list[Change] = [(b"/t/a", b"x" * 500), (b"/t/b", b"y")]
    assert engine.batches(big, Limits(max_request_bytes=REQUEST_OVERHEAD_BYTES + 100)) == [
        [big[0]],
        [big[1]],
    ]


# -- batch_txn ----------------------------------------------------------------


def test_batch_txn_compares_only_its_keys() -> None:
    batch = [
        (b"/r", None),  # an ancestor leaf
        (b"/t", None),  # the subtree's own leaf
        (b"/t/b", b"1"),
        (b"/t/d/e", None),
        (b"/t/x", b"2"),
    ]
    txn = engine.batch_txn(batch, "/t", 7)
    assert_txn(
        txn,
        [unchanged(7, b"/r"), unchanged(7, b"/t"), unchanged(7, b"/t/b", b"/t/x\x00")],
        [
            DeleteRange(b"/r"),
            DeleteRange(b"/t"),
            Put(b"/t/b", b"1"),
            DeleteRange(b"/t/d/e"),
            Put(b"/t/x", b"2"),
        ],
    )


def test_batch_txn_of_one_key_below() -> None:
    txn = engine.batch_txn([(b"/t/a", b"v")], "/t", 3)
    assert_txn(txn, [unchanged(3, b"/t/a", b"/t/a\x00")], [Put(b"/t/a", b"v")])


def test_batch_txn_sibling_with_same_prefix_is_outside() -> None:
    # '/tx' starts with '/t' but is not below '/t/'
    txn = engine.batch_txn([(b"/tx", None)], "/t", 3)
    assert list(txn.compare) == [unchanged(3, b"/tx")]


def covered(compare: Compare, key: bytes) -> bool:
    if compare.range_end:
        return compare.key <= key < compare.range_end
    return compare.key == key


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["/r", "/t", "/tx"]) | keys,
            st.none() | values,
        ),
        min_size=1,
        max_size=10,
        unique_by=lambda change: change[0],
    ).map(lambda batch: sorted((encode_key(k), v) for k, v in batch)),
    st.integers(0, 1000),
)
def test_batch_txn_guards_every_key_of_the_batch(
    batch: list[tuple[bytes, bytes | None]], revision: int
) -> None:
    txn = engine.batch_txn(batch, "/t", revision)
    assert list(txn.success) == [op_of(change) for change in batch]
    assert all(
        c.target == MOD and c.result == LESS and c.value == revision + 1 for c in txn.compare
    )
    inside = [k for k, _ in batch if k.startswith(b"/t/")]
    outside = [k for k, _ in batch if not k.startswith(b"/t/")]
    singles = [c.key for c in txn.compare if not c.range_end]
    spans = [c for c in txn.compare if c.range_end]
    assert singles == outside
    assert len(spans) == (1 if inside else 0)
    for key, _ in batch:
        assert any(covered(c, key) for c in txn.compare), key
    if spans:  # the range reaches no further than the batch's own first and last keys
        assert spans[0].key == inside[0]
        assert spans[0].range_end == inside[-1] + b"\x00"


def test_batch_txn_range_covers_non_utf8_keys() -> None:
    latin1 = decode_key(b"/t/\xa3")  # '/t/\udca3', a key another tool wrote in latin-1
    cjk = "/t/\u4e2d"  # b'/t/\xe4\xb8\xad'
    batch = engine.diff({}, {latin1: b"1", cjk: b"2"})
    txn = engine.batch_txn(batch, "/t", 5)
    for key, _ in batch:
        assert any(covered(c, key) for c in txn.compare), key


# -- a write of several txns --------------------------------------------------

BIG: dict[str, Node] = {f"k{i}": str(i).encode() for i in range(10)}
BIG_LIMITS = Limits(max_txn_ops=3)
BIG_LEAVES = dict(codec.flatten(BIG, "/big"))


def start_big_write() -> tuple[Any, Concurrent]:
    """A replace of BIG on an empty subtree at revision 100, up to its Concurrent step."""
    plan = engine.replace("/big", BIG, [], BIG_LIMITS)
    read = send(plan)
    step = send(plan, answer_ranges(read, [], 100))
    assert isinstance(step, Concurrent)
    return plan, step


def verify_answer(step: Txn, txns: list[Txn], revisions: list[int]) -> TxnResult:
    """The keys_only read after a write: each key written at its txn's revision."""
    items = [
        KeyValue(decode_key(op.key), b"", rev)
        for txn, rev in zip(txns, revisions, strict=True)
        for op in txn.success
        if isinstance(op, Put)
    ]
    return answer_ranges(step, items, max(revisions))


def test_large_write_yields_concurrent_batches() -> None:
    _, step = start_big_write()
    assert step.limit == TXNS_IN_FLIGHT
    changes = engine.diff({}, BIG_LEAVES)
    cut = engine.batches(changes, BIG_LIMITS)
    assert len(cut) == 4
    assert txns_of(step) == [engine.batch_txn(batch, "/big", 100) for batch in cut]
    written = [op for txn in txns_of(step) for op in txn.success]
    assert written == [op_of(change) for change in changes]
    assert apply({}, written) == BIG_LEAVES
    for txn in txns_of(step):
        assert 1 <= len(txn.success) <= BIG_LIMITS.max_txn_ops
        assert len(txn.compare) == 1  # one range: every key is below '/big'


def test_large_write_verifies_with_a_keys_only_read() -> None:
    plan, step = start_big_write()
    txns = txns_of(step)
    revisions = [101, 102, 103, 104]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    assert verify == read_txn("/big", ["/big"], keys_only=True)
    assert finish(plan, verify_answer(verify, txns, revisions)) is None


def test_large_write_keys_left_as_they_were_pass_verification() -> None:
    plan = engine.replace("/big", BIG, [], BIG_LIMITS)
    read = send(plan)
    # half the keys already hold their value (mod 50): only the other half is written
    kept = {k: v for i, (k, v) in enumerate(sorted(BIG_LEAVES.items())) if i % 2}
    step = send(plan, answer_ranges(read, [KeyValue(k, v, 50) for k, v in kept.items()], 100))
    assert isinstance(step, Concurrent)
    written = [op for txn in txns_of(step) for op in txn.success]
    assert {decode_key(op.key) for op in written} == set(BIG_LEAVES) - set(kept)
    revisions = [101 + i for i in range(len(txns_of(step)))]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    answer = verify_answer(verify, txns_of(step), revisions)
    below_range(answer).kvs += [KeyValue(k, b"", 50) for k in kept]
    below_range(answer).kvs.sort(key=lambda kv: kv.key)
    assert finish(plan, answer) is None


@pytest.mark.parametrize(
    "intruder",
    [
        KeyValue("/big/extra", b"", 103),  # a key another writer added
        KeyValue("/big/k3", b"", 999),  # one of ours, changed by another writer
    ],
)
def test_large_write_starts_again_when_verification_fails(intruder: KeyValue) -> None:
    plan, step = start_big_write()
    txns = txns_of(step)
    revisions = [101, 102, 103, 104]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    answer = verify_answer(verify, txns, revisions)
    below_kvs = [kv for kv in below_range(answer).kvs if kv.key != intruder.key]
    below_range(answer).kvs = sorted([*below_kvs, intruder], key=lambda kv: kv.key)
    assert isinstance(send(plan, answer), Sleep)
    assert send(plan, None) == read_txn("/big", ["/big"])


def test_large_write_foreign_key_in_place_of_ours_fails_verification() -> None:
    # as many keys as ours, each at a revision of ours, but one is not ours
    plan, step = start_big_write()
    revisions = [101, 102, 103, 104]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    answer = verify_answer(verify, txns_of(step), revisions)
    kvs_below = below_range(answer).kvs
    kvs_below[-1] = KeyValue("/big/zz", b"", kvs_below[-1].mod_revision)
    assert isinstance(send(plan, answer), Sleep)


def test_large_write_missing_key_fails_verification() -> None:
    plan, step = start_big_write()
    revisions = [101, 102, 103, 104]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    answer = verify_answer(verify, txns_of(step), revisions)
    del below_range(answer).kvs[0]
    assert isinstance(send(plan, answer), Sleep)


def test_large_write_partial_failure_raises_partial_write() -> None:
    plan, _ = start_big_write()
    error = EtcdError("member went away", endpoints=["http://e1:2379"])
    answers: list[Any] = [
        TxnResult(101, True, []),
        TxnResult(102, True, []),
        error,
        TxnResult(103, True, []),
    ]
    with pytest.raises(EtcdPartialWrite) as raised:
        plan.send(answers)
    assert raised.value.applied == 3
    assert raised.value.total == 4
    assert raised.value.__cause__ is error
    assert raised.value.endpoints == ("http://e1:2379",)
    assert raised.value.key == "/big"


def test_large_write_all_failed_raises_the_first_error() -> None:
    plan, step = start_big_write()
    errors = [EtcdError(f"error {i}") for i in range(len(txns_of(step)))]
    with pytest.raises(EtcdError) as raised:
        plan.send(errors)
    assert raised.value is errors[0]
    assert not isinstance(raised.value, EtcdPartialWrite)


def test_large_write_failed_compare_starts_again() -> None:
    plan, _ = start_big_write()
    answers = [
        TxnResult(101, True, []),
        TxnResult(101, False, []),
        TxnResult(102, True, []),
        TxnResult(103, True, []),
    ]
    assert isinstance(send(plan, answers), Sleep)
    read = send(plan, None)
    assert read == read_txn("/big", ["/big"])
    # the next attempt diffs against what is there now: only the missing keys
    done = dict(list(BIG_LEAVES.items())[:5])
    again = send(plan, answer_ranges(read, [KeyValue(k, v, 101) for k, v in done.items()], 103))
    assert isinstance(again, Concurrent)
    rewritten = {decode_key(op.key) for txn in txns_of(again) for op in txn.success}
    assert rewritten == set(BIG_LEAVES) - set(done)
    assert all(c.value == 104 for txn in txns_of(again) for c in txn.compare)


# -- replace driven end to end (hypothesis) -----------------------------------

names = st.text(alphabet="abc%", min_size=1, max_size=3)
trees = st.dictionaries(
    names,
    values | st.dictionaries(names, values, min_size=1, max_size=4),
    min_size=1,
    max_size=8,
)


@FAST
@given(
    current=trees | values,
    node=trees,
    max_txn_ops=st.integers(2, 5),  # a txn guarding a key and its range needs 2
    extra_bytes=st.integers(0, 200),
)
def test_replace_writes_exactly_the_diff_within_limits(
    current: Any, node: Any, max_txn_ops: int, extra_bytes: int
) -> None:
    limits = Limits(max_txn_ops, REQUEST_OVERHEAD_BYTES + 100 + extra_bytes)
    stored = dict(codec.flatten(current, "/t"))
    leaves = dict(codec.flatten(node, "/t"))
    plan = engine.replace("/t", node, [], limits)
    read = send(plan)
    answer = answer_ranges(read, kvs(stored, 5), 10)
    changes = engine.diff(stored, leaves)
    if not changes:  # nothing to write: the plan ends after its read
        assert stored == leaves
        assert finish(plan, answer) is None
        return
    step = send(plan, answer)
    if isinstance(step, Txn):
        assert len(step.success) <= max_txn_ops
        assert list(step.compare) == [unchanged(10, b"/t"), unchanged(10, b"/t/", b"/t0")]
        assert apply(stored, step.success) == leaves
        assert finish(plan, TxnResult(11, True, [])) is None
        return
    assert isinstance(step, Concurrent)
    txns = txns_of(step)
    assert len(txns) > 1
    ops = [op for txn in txns for op in txn.success]
    assert ops == [op_of(change) for change in changes]
    assert apply(stored, ops) == leaves
    for txn in txns:
        assert 1 <= len(txn.success) <= max_txn_ops
        assert len(txn.compare) <= len(txn.success)
    revisions = [11 + i for i in range(len(txns))]
    verify = send(plan, [TxnResult(rev, True, []) for rev in revisions])
    written_at = {
        decode_key(op.key): rev
        for txn, rev in zip(txns, revisions, strict=True)
        for op in txn.success
    }
    items = [KeyValue(k, b"", written_at.get(k, 5)) for k in leaves]
    assert finish(plan, answer_ranges(verify, items, revisions[-1])) is None


# -- reads --------------------------------------------------------------------


def test_snapshot_is_one_txn_of_two_ranges() -> None:
    plan = engine.snapshot("/s")
    assert send(plan) == Txn((), [Range(b"/s"), Range(b"/s/", b"/s0", limit=PAGE_SIZE)])
    leaf = KeyValue("/s", b"own", 3)
    child = KeyValue("/s/a", b"1", 4)
    answer = TxnResult(9, True, [RangeResult(9, [leaf]), RangeResult(9, [child])])
    assert finish(plan, answer) == Snapshot(9, [leaf, child])


def test_snapshot_of_the_root_has_no_single() -> None:
    plan = engine.snapshot("", keys_only=True)
    assert send(plan) == Txn((), [Range(b"/", b"0", limit=PAGE_SIZE, keys_only=True)])


def test_snapshot_pages_past_page_size_at_the_txn_revision() -> None:
    plan = engine.snapshot("/p", keys_only=True)
    send(plan)
    first = [KeyValue("/p/a", b"", 2), KeyValue("/p/b", b"", 3)]
    leaf = KeyValue("/p", b"", 1)
    answer = TxnResult(
        50, True, [RangeResult(50, [leaf]), RangeResult(50, first, more=True, count=5)]
    )
    page = send(plan, answer)
    assert page == Range(b"/p/b\x00", b"/p0", limit=PAGE_SIZE, revision=50, keys_only=True)
    second = [KeyValue(decode_key(b"/p/\xff"), b"", 4)]
    page = send(plan, RangeResult(60, second, more=True))
    # the page starts right after the last key, as its original bytes
    assert page == Range(b"/p/\xff\x00", b"/p0", limit=PAGE_SIZE, revision=50, keys_only=True)
    third = [KeyValue(decode_key(b"/p/\xff\xfe"), b"", 5)]
    assert finish(plan, RangeResult(60, third, more=False)) == Snapshot(
        50, [leaf, *first, *second, *third]
    )


def test_snapshot_with_singles() -> None:
    plan = engine.snapshot("/t", singles=["/a", "/a/b", "/t"])
    assert send(plan) == read_txn("/t", ["/a", "/a/b", "/t"])
    ancestor = KeyValue("/a", b"x", 2)
    answer = TxnResult(
        7,
        True,
        [RangeResult(7, [ancestor]), RangeResult(7), RangeResult(7), RangeResult(7)],
    )
    assert finish(plan, answer) == Snapshot(7, [ancestor])


def test_read_tree_absent() -> None:
    plan = engine.read_tree("/none")
    read = send(plan)
    assert finish(plan, answer_ranges(read, [], 33)) == (ABSENT, 33)


def test_read_tree_decodes_the_stored_value() -> None:
    value = {"host": "localhost", "port": 5432, "tags": ["a", {"b": None}], "on": True}
    pairs = codec.flatten(codec.encode(value), "/cfg")
    plan = engine.read_tree("/cfg")
    read = send(plan)
    assert finish(plan, answer_ranges(read, kvs(dict(pairs)), 12)) == (value, 12)


def test_read_tree_of_a_leaf() -> None:
    plan = engine.read_tree("/cfg/port")
    read = send(plan)
    assert finish(plan, answer_ranges(read, [KeyValue("/cfg/port", b"5432", 3)], 4)) == (
        5432,
        4,
    )


@FAST
@given(json_documents(max_leaves=15))
def test_read_tree_decodes_any_document(value: Any) -> None:
    pairs = dict(codec.flatten(codec.encode(value), "/doc"))
    plan = engine.read_tree("/doc")
    read = send(plan)
    result, revision = finish(plan, answer_ranges(read, kvs(pairs), 8))
    assert revision == 8
    assert result == value


@pytest.mark.parametrize(
    ("below_count", "own_count", "expected"),
    [(0, 0, False), (0, 1, True), (3, 0, True), (2, 1, True)],
)
def test_exists(below_count: int, own_count: int, expected: bool) -> None:
    plan = engine.exists("/e")
    assert send(plan) == Txn(
        (), [Range(b"/e/", b"/e0", count_only=True), Range(b"/e", count_only=True)]
    )
    answer = TxnResult(
        5, True, [RangeResult(5, count=below_count), RangeResult(5, count=own_count)]
    )
    assert finish(plan, answer) is expected


def test_exists_at_the_root() -> None:
    plan = engine.exists("")
    assert send(plan) == Txn((), [Range(b"/", b"0", count_only=True)])
    assert finish(plan, TxnResult(5, True, [RangeResult(5, count=0)])) is False


def test_children() -> None:
    plan = engine.children("/c")
    read = send(plan)
    assert read == read_txn("/c", [], keys_only=True)
    items = [
        KeyValue("/c", b"", 1),
        KeyValue("/c/b", b"", 2),
        KeyValue("/c/a/x", b"", 3),
        KeyValue("/c/a/y/z", b"", 4),
        KeyValue("/c/%2F", b"", 5),
    ]
    assert finish(plan, answer_ranges(read, items, 6)) == ["%2F", "a", "b"]


def test_children_of_nothing() -> None:
    plan = engine.children("/c")
    read = send(plan)
    assert finish(plan, answer_ranges(read, [KeyValue("/c", b"leaf", 1)], 2)) == []


def test_delete() -> None:
    plan = engine.delete("/d")
    assert_txn(send(plan), [], [DeleteRange(b"/d/", b"/d0"), DeleteRange(b"/d")])
    answer = TxnResult(9, True, [DeleteRangeResult(9, 3), DeleteRangeResult(9, 1)])
    assert finish(plan, answer) == 4


def test_delete_root() -> None:
    plan = engine.delete("")
    assert_txn(send(plan), [], [DeleteRange(b"/", b"0")])
    assert finish(plan, TxnResult(9, True, [DeleteRangeResult(9, 0)])) == 0


# -- keys that are not UTF-8 --------------------------------------------------


def raw_kvs(*pairs: tuple[bytes, bytes, int]) -> list[KeyValue]:
    """KeyValues as a transport builds them from raw etcd keys."""
    return key_values(SimpleNamespace(key=k, value=v, mod_revision=m, lease=0) for k, v, m in pairs)


def test_non_utf8_key_is_deleted_as_its_bytes() -> None:
    stored = raw_kvs((b"/t/\xff", b"x", 3), (b"/t/ok", b"1", 3), (b"/t/\xc3(", b"y", 4))
    assert stored[0].key == "/t/\udcff"
    plan = engine.replace("/t", {"ok": b"1"}, [], Limits())
    read = send(plan)
    write = send(plan, answer_ranges(read, stored, 5))
    assert sorted(write.success, key=lambda op: op.key) == [
        DeleteRange(b"/t/\xc3("),
        DeleteRange(b"/t/\xff"),
    ]
    assert finish(plan, TxnResult(6, True, [])) is None


def test_non_utf8_keys_in_batch_txns_and_paths() -> None:
    [kv] = raw_kvs((b"/t/\xfe/a", b"x", 3))
    txn = engine.batch_txn([(encode_key(kv.key), None)], "/t", 5)
    assert list(txn.success) == [DeleteRange(b"/t/\xfe/a")]
    assert list(txn.compare) == [unchanged(5, b"/t/\xfe/a", b"/t/\xfe/a\x00")]
    # a subtree whose own key is not UTF-8: delete, replace, read
    key = kv.key.rsplit("/", 1)[0]  # '/t/\udcfe'
    assert_txn(
        send(engine.delete(key)),
        [],
        [DeleteRange(b"/t/\xfe/", range_end(b"/t/\xfe/")), DeleteRange(b"/t/\xfe")],
    )
    plan = engine.replace(key, b"v", ["/t"], Limits())
    assert list(send(plan).success) == [
        Put(b"/t/\xfe", b"v"),
        DeleteRange(b"/t/\xfe/", b"/t/\xfe0"),
        DeleteRange(b"/t"),
    ]
    assert send(engine.snapshot(key)) == Txn(
        (), [Range(b"/t/\xfe"), Range(b"/t/\xfe/", b"/t/\xfe0", limit=PAGE_SIZE)]
    )


# -- a value read as one plain range ------------------------------------------


def run_read(key: str, store: list[KeyValue], revision: int = 40) -> tuple[Any, int, list[Any]]:
    """Drive ``read_tree(key)`` against ``store`` (an etcd that never changes); the
    result and every step it sent."""
    plan = engine.read_tree(key)
    steps: list[Any] = []
    answer: Any = None
    while True:
        try:
            step = plan.send(answer)
        except StopIteration as stop:
            value, at = stop.value
            return value, at, steps
        if step is PAUSE:
            answer = None
            continue
        steps.append(step)
        assert isinstance(step, Txn | Range), step  # a read sends reads only
        answer = answer_ranges(step, store, revision)


def test_read_of_a_leaf_is_one_plain_range() -> None:
    store = [KeyValue("/cfg/port", b"5432", 3), KeyValue("/cfg/portal", b"x", 3)]
    value, revision, steps = run_read("/cfg/port", store)
    assert steps == [Range(b"/cfg/port", b"/cfg/port0", limit=PAGE_SIZE)]
    assert (value, revision) == (5432, 40)


def test_read_of_a_tree_is_one_plain_range() -> None:
    store = kvs({"/t/a": b"1", "/t/b/c": b"x", "/u": b"2", "/t0": b"3"})
    value, _, steps = run_read("/t", store)
    assert steps == [Range(b"/t", b"/t0", limit=PAGE_SIZE)]
    assert value == {"a": 1, "b": {"c": "x"}}


def test_read_drops_siblings_that_sort_between_the_key_and_below_it() -> None:
    # '-', '.', ' ', '!', '%' sort below '/': these keys fall in [key, key + '0')
    store = kvs(
        {
            "/a": b"leaf",
            "/a-b": b"1",
            "/a.c/x": b"2",
            "/a %": b"3",
            "/a!": b"4",
            "/a%2F": b"5",
            "/a/x": b"6",
        }
    )
    value, _, steps = run_read("/a", store)
    assert len(steps) == 1
    assert value == {"x": 6}  # the directory wins over the leaf at /a
    assert run_read("/a-b", store)[0] == 1


def test_read_of_siblings_only_is_absent() -> None:
    value, revision, steps = run_read("/a", kvs({"/a-b": b"1", "/a.c": b"2"}))
    assert (value, revision) == (ABSENT, 40)
    assert len(steps) == 1


def test_read_pages_from_below_the_key_when_siblings_fill_the_first_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "PAGE_SIZE", 3)
    store = kvs({"/a": b"0", "/a-1": b"1", "/a-2": b"2", "/a-3": b"3", "/a/x": b"4"})
    value, _, steps = run_read("/a", store, revision=77)
    assert steps == [
        Range(b"/a", b"/a0", limit=3),
        Range(b"/a/", b"/a0", limit=3, revision=77),  # past the siblings, pinned
    ]
    assert value == {"x": 4}


def test_read_pages_past_page_size_at_the_first_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PAGE_SIZE", 2)
    plan = engine.read_tree("/p")
    assert send(plan) == Range(b"/p", b"/p0", limit=2)
    first = RangeResult(50, [KeyValue("/p/a", b"1", 2), KeyValue("/p/b", b"2", 3)], more=True)
    assert send(plan, first) == Range(b"/p/b\x00", b"/p0", limit=2, revision=50)
    last = RangeResult(60, [KeyValue("/p/c", b"3", 4)])
    assert finish(plan, last) == ({"a": 1, "b": 2, "c": 3}, 50)


def test_read_at_a_revision_pins_the_range() -> None:
    plan = engine.read_tree("/p", revision=12)
    assert send(plan) == Range(b"/p", b"/p0", limit=PAGE_SIZE, revision=12)
    assert finish(plan, RangeResult(30, [KeyValue("/p", b"1", 2)])) == (1, 12)


def test_read_denied_on_the_key_reads_below_it() -> None:
    """A role granted on the prefix '/app/' may not read the key '/app'."""
    plan = engine.read_tree("/app")
    send(plan)
    fallback = plan.throw(EtcdPermissionDenied("permission denied"))
    assert fallback == read_txn("/app", [])
    answer = answer_ranges(fallback, kvs({"/app/a": b"1"}), 9)
    assert finish(plan, answer) == ({"a": 1}, 9)


def test_read_denied_with_nothing_below_raises() -> None:
    plan = engine.read_tree("/app")
    send(plan)
    fallback = plan.throw(EtcdPermissionDenied("permission denied"))
    assert isinstance(fallback, Txn)
    with pytest.raises(EtcdPermissionDenied):
        plan.send(answer_ranges(fallback, [], 9))


segment_chars = st.sampled_from(["a", "b", "-", ".", " ", "%", "0", "\udcff", "é"])
segments = st.text(segment_chars, min_size=1, max_size=3)


@FAST
@given(
    st.dictionaries(
        st.lists(segments, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)),
        st.sampled_from([b"1", b"x", b"{}", b"[]", b'"s"']),
        max_size=25,
    ),
    segments,
    st.integers(1, 5),
)
def test_read_value_is_the_txn_read(store: dict[str, bytes], name: str, page: int) -> None:
    """Whatever the keys around it and the page size, the one-range read gives the
    value the txn of exact ranges gives (the key and the range below it)."""
    key = "/" + name
    items = kvs(store)
    reference = [
        (kv.key, kv.value) for kv in items if kv.key == key or kv.key.startswith(key + "/")
    ]
    expected = codec.decode(reference, key) if reference else ABSENT
    saved = engine.PAGE_SIZE
    engine.PAGE_SIZE = page
    try:
        value, revision, steps = run_read(key, items)
    finally:
        engine.PAGE_SIZE = saved
    assert value == expected
    assert revision == 40
    assert all(step.revision == 40 for step in steps[1:])  # later pages: one snapshot


# -- retried answers ----------------------------------------------------------


def retried(answer: Any) -> Any:
    answer.retried = True
    return answer


def test_delete_retried_that_found_nothing_reports_deleted_before_retry() -> None:
    plan = engine.delete("/d")
    send(plan)
    answer = retried(TxnResult(9, True, [DeleteRangeResult(9, 0), DeleteRangeResult(9, 0)]))
    assert finish(plan, answer) == engine.DELETED_BEFORE_RETRY == -1


def test_delete_retried_that_deleted_reports_its_count() -> None:
    plan = engine.delete("/d")
    send(plan)
    answer = retried(TxnResult(9, True, [DeleteRangeResult(9, 2), DeleteRangeResult(9, 0)]))
    assert finish(plan, answer) == 2


def test_delete_not_retried_that_found_nothing_reports_zero() -> None:
    plan = engine.delete("/d")
    send(plan)
    assert finish(plan, TxnResult(9, True, [DeleteRangeResult(9, 0)] * 2)) == 0


def test_delete_denied_on_the_key_deletes_below_it() -> None:
    plan = engine.delete("/app")
    send(plan)
    again = plan.throw(EtcdPermissionDenied("permission denied"))
    assert_txn(again, [], [DeleteRange(b"/app/", b"/app0")])
    assert finish(plan, TxnResult(9, True, [DeleteRangeResult(9, 3)])) == 3


def test_delete_denied_below_raises() -> None:
    plan = engine.delete("/app")
    send(plan)
    plan.throw(EtcdPermissionDenied("permission denied"))
    with pytest.raises(EtcdPermissionDenied):
        plan.throw(EtcdPermissionDenied("permission denied"))


def test_applied_before_finds_our_txn() -> None:
    changes = [(b"/k/a", b"1"), (b"/k/b", None), (b"/k/c", b"3")]
    plan = engine.applied_before(changes, 0, 10, 14)
    assert send(plan) == Txn((), [Range(b"/k/a", revision=14), Range(b"/k/c", revision=14)])
    store = [KeyValue("/k/a", b"1", 12), KeyValue("/k/c", b"3", 12)]
    answer = answer_ranges(Txn((), [Range(b"/k/a"), Range(b"/k/c")]), store, 14)
    assert finish(plan, answer) == 12


@pytest.mark.parametrize(
    "store",
    [
        [KeyValue("/k/a", b"1", 12), KeyValue("/k/c", b"3", 13)],  # two txns
        [KeyValue("/k/a", b"1", 9), KeyValue("/k/c", b"3", 9)],  # before our read
        [KeyValue("/k/a", b"other", 12), KeyValue("/k/c", b"3", 12)],  # another value
        [KeyValue("/k/a", b"1", 12)],  # a key missing
        [KeyValue("/k/a", b"1", 12, 7), KeyValue("/k/c", b"3", 12, 7)],  # another lease
    ],
)
def test_applied_before_refuses_anything_else(store: list[KeyValue]) -> None:
    changes = [(b"/k/a", b"1"), (b"/k/c", b"3")]
    plan = engine.applied_before(changes, 0, 10, 14)
    assert finish(plan, answer_ranges(send(plan), store, 14)) == 0


# -- prefix-scoped roles ------------------------------------------------------


def test_leaf_write_leaves_out_ancestors_the_role_does_not_cover() -> None:
    plan = engine.replace("/app/a/b", b"v", ["/app", "/app/a"], Limits())
    send(plan)
    denied = EtcdPermissionDenied("permission denied")
    again = plan.throw(denied)
    assert isinstance(again, Txn)
    assert list(again.success) == [
        Put(b"/app/a/b", b"v"),
        DeleteRange(b"/app/a/b/", b"/app/a/b0"),
        DeleteRange(b"/app/a"),  # still checked: below the grant
    ]
    assert finish(plan, TxnResult(5, True, [])) is None


def test_leaf_write_denied_without_ancestors_raises() -> None:
    plan = engine.replace("/app/a", b"v", ["/app"], Limits())
    send(plan)
    last = plan.throw(EtcdPermissionDenied("permission denied"))
    assert isinstance(last, Txn)
    assert list(last.success) == [Put(b"/app/a", b"v"), DeleteRange(b"/app/a/", b"/app/a0")]
    with pytest.raises(EtcdPermissionDenied):
        plan.throw(EtcdPermissionDenied("permission denied"))


def test_tree_write_reads_and_compares_only_what_the_role_covers() -> None:
    plan = engine.replace("/app", {"x": b"1"}, [], Limits())
    assert send(plan) == read_txn("/app", ["/app"])
    read = plan.throw(EtcdPermissionDenied("permission denied"))
    assert read == read_txn("/app", [])
    write = send(plan, answer_ranges(read, [], 20))
    assert_txn(write, [unchanged(20, b"/app/", b"/app0")], [Put(b"/app/x", b"1")])
    assert finish(plan, TxnResult(21, True, [])) is None


def test_exists_denied_on_the_key_counts_below_it() -> None:
    plan = engine.exists("/app")
    send(plan)
    again = plan.throw(EtcdPermissionDenied("permission denied"))
    assert again == Txn((), [Range(b"/app/", b"/app0", count_only=True)])
    assert finish(plan, TxnResult(5, True, [RangeResult(5, count=2)])) is True


def test_guarded_write_retried_after_our_lost_attempt_reports_it_written() -> None:
    """create(): the first attempt was applied but its answer lost; the retry's
    compares fail; the plan finds its own keys and does not decide again."""
    calls: list[Any] = []

    def decide(items: list[KeyValue]) -> Any:
        calls.append(items)
        return guarded.KEEP if items else b"v"

    plan = guarded.replace_if("/c", [], Limits(), decide)
    read = send(plan)
    call = send(plan, answer_ranges(read, [], 10))
    write = send(plan, call.function(call.argument))
    assert list(write.success) == [Put(b"/c", b"v")]
    check = send(plan, retried(TxnResult(11, False, [])))
    assert check == Txn((), [Range(b"/c", revision=11)])
    assert finish(plan, answer_ranges(check, [KeyValue("/c", b"v", 11)], 11)) == (True, 11)
    assert len(calls) == 1


def test_guarded_write_retried_that_lost_to_another_writer_reads_again() -> None:
    plan = guarded.replace_if("/c", [], Limits(), lambda items: b"v")
    read = send(plan)
    call = send(plan, answer_ranges(read, [], 10))
    send(plan, call.function(call.argument))
    check = send(plan, retried(TxnResult(11, False, [])))
    assert isinstance(send(plan, answer_ranges(check, [KeyValue("/c", b"w", 11)], 11)), Sleep)


def test_keys_found_uncovered_are_left_out_from_the_start_next_time() -> None:
    uncovered: set[str] = set()
    plan = engine.replace("/app/a/b", b"v", ["/app", "/app/a"], Limits(), uncovered=uncovered)
    send(plan)
    plan.throw(EtcdPermissionDenied("permission denied"))
    assert finish(plan, TxnResult(5, True, [])) is None
    assert uncovered == {"/app"}
    again = engine.replace(
        "/app/a/c", {"x": b"1"}, ["/app", "/app/a"], Limits(), uncovered=uncovered
    )
    assert send(again) == read_txn("/app/a/c", ["/app/a", "/app/a/c"])  # no refused attempt


def test_uncovered_keys_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "UNCOVERED_KEPT", 1)
    uncovered = {"/x"}
    plan = engine.replace("/app/a", b"v", ["/app"], Limits(), uncovered=uncovered)
    send(plan)
    plan.throw(EtcdPermissionDenied("permission denied"))
    finish(plan, TxnResult(5, True, []))
    assert uncovered == {"/x"}


def test_answer_as_checks_the_kind_of_an_answer() -> None:
    """A transport that answers a request with another kind is a bug: say which."""
    answer = RangeResult(7, [])
    assert engine.answer_as(RangeResult, answer) is answer
    with pytest.raises(TypeError, match="expected a TxnResult answer, got RangeResult"):
        engine.answer_as(TxnResult, answer)


def test_a_range_answer_converts_its_raw_key_values_each_way() -> None:
    raw = [
        SimpleNamespace(
            key=key, value=b"v", mod_revision=rev, create_revision=2, version=1, lease=0
        )
        for key, rev in ((b"/a", 5), (b"/b\xff", 7))
    ]
    assert RangeResult(9, raw=raw).mod_revisions() == [("/a", 5), ("/b\udcff", 7)]
    assert RangeResult(9, raw=raw).pairs() == [("/a", b"v"), ("/b\udcff", b"v")]
    converted = RangeResult(9, raw=raw)
    kvs = converted.kvs
    assert [(kv.key, kv.mod_revision) for kv in kvs] == converted.mod_revisions()
    assert [(kv.key, kv.value) for kv in kvs] == converted.pairs()
