"""Pure tree encoding: no etcd needed."""

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd import codec, decoding
from link.etcd.errors import EtcdInvalidTree
from link.etcd.paths import MAX_DEPTH

from .helpers import range_pairs, same
from .strategies import deep_tree, json_documents, python_values


def roundtrip(value: Any) -> Any:
    flat = codec.flatten(codec.encode(value), "/base")
    return codec.decode(flat, "/base")


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("localhost", b"localhost"),
        ("42", b'"42"'),
        ("true", b'"true"'),
        ("null", b'"null"'),
        ('"quoted"', b'"\\"quoted\\""'),
        ("[]", b'"[]"'),
        ("{}", b'"{}"'),
        ("[1, 2]", b"[1, 2]"),
        ("NaN", b"NaN"),
        (" 7", b'" 7"'),
        ("", b""),
        ("héllo", "héllo".encode()),
        (42, b"42"),
        (-1.5, b"-1.5"),
        (1.0, b"1.0"),
        (True, b"true"),
        (None, b"null"),
    ],
)
def test_leaf_encoding(value: Any, stored: bytes) -> None:
    assert codec.encode_leaf(value) == stored
    assert codec.decode_leaf(stored) == value
    assert type(codec.decode_leaf(stored)) is type(value)


@pytest.mark.parametrize(
    ("stored", "value"),
    [
        (b"5432", 5432),
        (b"0", 0),
        (b"0123", "0123"),
        (b"-7", -7),
        (b"1" * 5000, "1" * 5000),  # longer than Python's int parsing limit: text
        (b"9" * 700, int("9" * 700)),  # longer than the fast path, within the limit
        ("١٢".encode(), "١٢"),  # Unicode digits are not JSON numbers
        (b"00", "00"),
        (b"1.5e3", 1500.0),
        (b"true", True),
        (b"", ""),
        (b"localhost", "localhost"),
        (b"\xff\xfe", b"\xff\xfe"),
        (b"{}", {}),
    ],
)
def test_foreign_values(stored: bytes, value: Any) -> None:
    assert codec.decode_leaf(stored) == value


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "50%", "%2F", "%", "01234567890123456789"])
def test_names_escape_and_roundtrip(name: str) -> None:
    segment = codec.escape_name(name)
    assert "/" not in segment
    assert segment not in ("", ".", "..")
    assert not codec.is_position(segment)
    assert codec.unescape_name(segment) == name


def test_assemble_sorts_unordered_children_on_request() -> None:
    children = {"b": 1, "a%2Fz": 2, "_c": 3}
    assert list(codec.assemble(dict(children), sort=True)) == ["_c", "a/z", "b"]
    assert list(codec.assemble(dict(children))) == ["b", "a/z", "_c"]
    positions = {codec.position(i): i for i in (2, 0, 1)}
    assert codec.assemble(dict(positions), sort=True) == [0, 1, 2]
    assert codec.assemble(dict(positions)) == [0, 1, 2]


def test_lists_use_in_order_positions() -> None:
    flat = codec.flatten(codec.encode({"w": ["a", "b"]}), "")
    assert flat == [("/w/00000000000000000000", b"a"), ("/w/00000000000000000001", b"b")]


def test_empty_containers_are_marker_leaves() -> None:
    assert codec.flatten(codec.encode({"d": {}, "l": []}), "") == [("/d", b"{}"), ("/l", b"[]")]


def test_directory_wins_over_leaf() -> None:
    assert codec.decode([("/x", b"leaf"), ("/x/a", b"1")], "/x") == {"a": 1}


def test_list_gaps_close_and_order_follows_keys() -> None:
    items = [("/l/00000000000000000009", b"c"), ("/l/00000000000000000002", b"a")]
    assert codec.decode(items, "/l") == ["a", "c"]


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {"a": {1, 2}},
        {"a": object()},
        {"a": math.nan},
        {"a": [math.inf]},
        {"a": "\ud800"},
    ],
)
def test_bad_input_rejected(value: Any) -> None:
    with pytest.raises(EtcdInvalidTree):
        codec.encode(value)


def test_error_names_the_path() -> None:
    with pytest.raises(EtcdInvalidTree, match=r"/app/x\[1\]"):
        codec.encode({"x": [1, {2}]}, "/app")


@given(json_documents())
def test_roundtrip_property(doc: Any) -> None:
    expected = list(doc) if isinstance(doc, tuple) else doc
    assert roundtrip(doc) == expected


@given(st.text())
def test_any_string_roundtrips(text: str) -> None:
    assert codec.decode_leaf(codec.encode_leaf(text)) == text


def test_only_ascii_digits_make_a_position() -> None:
    arabic_indic = "\u0660" * 20  # str.isdigit() is True, but this is a dict key
    assert not codec.is_position(arabic_indic)
    assert roundtrip({arabic_indic: 1, "x": 2}) == {arabic_indic: 1, "x": 2}


def test_gc_paused_restores_the_collector() -> None:
    import gc

    assert gc.isenabled()

    def paused_then_raise() -> None:
        with codec.gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("in the block")

    with pytest.raises(RuntimeError, match="in the block"):
        paused_then_raise()
    assert gc.isenabled()
    gc.disable()
    try:
        with codec.gc_paused():
            pass
        assert not gc.isenabled()  # it was off: left off
    finally:
        gc.enable()


def test_unknown_type_message_names_type_and_path() -> None:
    with pytest.raises(EtcdInvalidTree) as info:
        codec.encode({"x": object()}, "/app")
    assert "type 'object' at '/app/x'" in str(info.value)
    assert "a object" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe", b"\x80", bytearray(b"\xc3"), b"a\xffb"],
)
def test_bytes_that_are_not_utf8_are_stored_as_they_are(value: bytes) -> None:
    assert codec.encode({"b": value}) == {"b": bytes(value)}
    assert same(roundtrip({"b": value})["b"], bytes(value))


@pytest.mark.parametrize(("value", "read"), [(b"abc", "abc"), (b"42", 42), (b"", ""), (b"{}", {})])
def test_bytes_that_are_utf8_read_back_as_their_text(value: bytes, read: Any) -> None:
    assert codec.encode_leaf(value) == value
    assert roundtrip({"b": value}) == {"b": read}


def test_text_only_refuses_bytes_that_are_not_utf8() -> None:
    assert codec.encode({"b": b"abc"}, text_only=True) == {"b": b"abc"}
    with pytest.raises(EtcdInvalidTree, match=r"'/app/b'.*not UTF-8"):
        codec.encode({"b": b"\xff"}, "/app", text_only=True)


@pytest.mark.parametrize("name", ["\ud800", "a\udfff", "\udbff\udc00"])
def test_dict_key_with_a_lone_surrogate_is_refused(name: str) -> None:
    with pytest.raises(EtcdInvalidTree) as info:
        codec.encode({"ok": {name: 1}}, "/app")
    assert "/app/ok" in str(info.value)
    assert "surrogate" in str(info.value)


def test_dict_key_of_undecodable_key_bytes_roundtrips_but_not_on_v2() -> None:
    value = {"\udc80x": 1}  # what decode_key makes of the key bytes b"\x80x"
    assert roundtrip(value) == value
    with pytest.raises(EtcdInvalidTree, match="v2 keys are UTF-8 text"):
        codec.encode(value, "/app", text_only=True)


def test_depth_limit_counts_path_and_nesting() -> None:
    assert roundtrip(deep_tree(MAX_DEPTH)) == deep_tree(MAX_DEPTH)
    codec.encode(deep_tree(MAX_DEPTH - 2), "/a/b")
    with pytest.raises(EtcdInvalidTree, match=f"MAX_DEPTH={MAX_DEPTH}"):
        codec.encode(deep_tree(MAX_DEPTH - 1), "/a/b")
    with pytest.raises(EtcdInvalidTree, match="MAX_DEPTH"):
        codec.encode(deep_tree(MAX_DEPTH + 1, leaf=[1]))
    # an empty container at the limit is a leaf: it takes no segment more
    codec.encode(deep_tree(MAX_DEPTH - 1, leaf={}))


def test_nesting_far_past_the_recursion_limit_is_refused_not_crashed() -> None:
    with pytest.raises(EtcdInvalidTree, match="MAX_DEPTH"):
        codec.encode(deep_tree(5000))


def test_reading_a_tree_deeper_than_the_recursion_limit() -> None:
    # written by another tool: 3,000 segments, more than MAX_DEPTH and the stack
    key = "/r/" + "/".join(["a"] * 3000)
    value = codec.decode([(key + "/x", b"1"), ("/r/b", b"\xff")], "/r")
    assert value["b"] == b"\xff"
    for _ in range(3000):
        value = value["a"]
    assert value == {"x": 1}


@given(python_values())
def test_any_python_value_roundtrips_or_is_refused(value: Any) -> None:
    try:
        node = codec.encode(value, "/base")
    except EtcdInvalidTree:
        return
    assert same(codec.decode(codec.flatten(node, "/base"), "/base"), expected(value))


def expected(value: Any) -> Any:
    """What reading gives back: tuples as lists, UTF-8 bytes as their text."""
    if isinstance(value, dict):
        return {name: expected(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [expected(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return codec.decode_leaf(bytes(value))
    return value


# -- the one-pass read (decode_sorted) against the general path (nest + build) --

#: Key segments that exercise the format's rules: list positions, escapes, names
#: that sort between a leaf and its directory ("a-b" < "a/" < "a0"), Unicode.
_SEGMENTS = st.sampled_from(
    ["a", "a-b", "a.b", "a0", "b", "%", "%2F", "50%25", "%2E", "%300000000000000000001"]
    + [codec.position(i) for i in (0, 1, 2, 11)]
    + ["é", "\udc80x", "0" * 19]
)
#: Stored values: plain text, JSON scalars and markers, JSON-looking text, not UTF-8.
_VALUES = st.sampled_from(
    [
        b"x",
        b"",
        b"42",
        b"-1.5",
        b"true",
        b"null",
        b"{}",
        b"[]",
        b'"7"',
        b"tcp",
        b"1 ",
        b"true\n",
        b"[1]",
        b"10.0.0.1",
        b"nan",
        b"\xff",
        "é".encode(),
    ]
)
_KEYS = st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join)


def general(pairs: list[tuple[str, bytes]], base: str) -> Any:
    return codec.build(codec.nest(pairs, base))


@given(st.dictionaries(_KEYS, _VALUES, max_size=12), st.booleans(), _VALUES)
def test_one_pass_decodes_sorted_pairs_as_the_general_path(
    leaves: dict[str, bytes], with_own: bool, own: bytes
) -> None:
    pairs = sorted((f"/r/{rel}", raw) for rel, raw in leaves.items())
    if with_own:  # the key read is a leaf too (the directory wins)
        pairs.insert(0, ("/r", own))
    value = codec.decode_sorted(pairs, "/r")
    expected = general(pairs, "/r")
    assert same(value, expected)
    assert list_of_names(value) == list_of_names(expected)
    backwards = pairs[::-1]  # unsorted: the general path, whatever it makes of them
    assert same(codec.decode(iter(backwards), "/r"), general(backwards, "/r"))


def list_of_names(value: Any) -> Any:
    """The dict keys of ``value`` in order, all the way down (same() ignores order)."""
    if isinstance(value, dict):
        return [(name, list_of_names(item)) for name, item in value.items()]
    if isinstance(value, list):
        return [list_of_names(item) for item in value]
    return None


@pytest.mark.parametrize(
    "pairs",
    [
        [("/r/b", b"1"), ("/r/a", b"2")],  # descending
        [("/r/a", b"1"), ("/r/a", b"2")],  # a key twice
        [("/r/a/x", b"1"), ("/r", b"2")],  # the key read itself comes first when sorted
        [("/q", b"1")],  # outside the key read
        [("/r/a/x", b"1"), ("/s", b"2")],
        [("/r//x", b"1")],  # an empty segment: nest files it under /r
        [("/r/a//x", b"1")],
    ],
)
def test_one_pass_gives_up_on_what_it_cannot_decode(pairs: list[tuple[str, bytes]]) -> None:
    assert codec.decode_sorted(pairs, "/r") is codec.UNSORTED


def test_decode_takes_the_general_path_when_the_one_pass_gives_up() -> None:
    pairs = [("/r/b", b"1"), ("/r/a/x", b"2"), ("/r//y", b"3")]
    assert (
        codec.decode(iter(pairs), "/r") == general(pairs, "/r") == {"b": 1, "a": {"x": 2}, "y": 3}
    )


@pytest.mark.parametrize(
    ("pairs", "value"),
    [
        ([], {}),
        ([("/r", b"7")], 7),
        ([("/r", b"\xff")], b"\xff"),
        ([("/r", b"leaf"), ("/r-b", b"not ours"), ("/r/a", b"1")], {"a": 1}),
        ([("/r/a", b"leaf"), ("/r/a-b", b"2"), ("/r/a/x", b"1")], {"a": {"x": 1}, "a-b": 2}),
        ([("/r/l/" + codec.position(i), str(i).encode()) for i in (1, 4, 9)], {"l": [1, 4, 9]}),
        ([("/r/%2F", b"s"), ("/r/%300000000000000000000", b"p")], {"/": "s", "0" * 20: "p"}),
    ],
)
def test_one_pass_examples(pairs: list[tuple[str, bytes]], value: Any) -> None:
    pairs = [(key, raw) for key, raw in pairs if key == "/r" or key.startswith("/r/")]
    assert same(codec.decode_sorted(pairs, "/r"), value)


def test_one_pass_reads_the_whole_keyspace() -> None:
    pairs = [("/a", b"1"), ("/b/c", b"x")]
    assert codec.decode_sorted(pairs, "") == {"a": 1, "b": {"c": "x"}} == general(pairs, "")
    assert codec.decode_sorted([("/a", b"1"), ("b", b"2")], "") is codec.UNSORTED  # no "/"


@given(
    st.dictionaries(
        st.sampled_from(["a", "%25", "0" * 20, "1" * 20, "١" * 20, "1" * 21]), st.integers()
    )
)
def test_directory_value_is_assemble_for_names_in_key_order(children: dict[str, int]) -> None:
    ordered = dict(sorted(children.items()))
    assert decoding._directory_value(dict(ordered)) == codec.assemble(dict(ordered))


def reference_parse(text: str) -> tuple[bool, Any]:
    """What _parse_leaf_text must say: json.loads, scalars and empty containers only."""
    try:
        value = json.loads(text, parse_constant=decoding._reject_constant)
    except ValueError:
        return False, None
    return (False, None) if isinstance(value, list | dict) and value else (True, value)


@given(st.text(alphabet=st.sampled_from([*'-+.eE019 \t\n\r\x0b"[]{}tfnrueals', "١"])))
def test_leaf_text_parses_as_json_does(text: str) -> None:
    parsed, value = decoding._parse_leaf_text(text)
    expected = reference_parse(text)
    assert parsed == expected[0]
    if parsed:
        assert same(value, expected[1])


@given(python_values())
def test_any_python_value_roundtrips_through_sorted_keys(value: Any) -> None:
    pairs = range_pairs(value, "/base")
    if pairs is None:
        return
    assert codec.decode_sorted(pairs, "/base") is not codec.UNSORTED
    assert same(codec.decode(pairs, "/base"), expected(value))
