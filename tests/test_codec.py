"""Pure tree encoding: no etcd needed."""

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd import codec
from link.etcd.errors import EtcdInvalidTree

from .strategies import json_documents


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
    assert "/" not in segment and segment not in ("", ".", "..")
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
        {"a": b"bytes"},
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
    with pytest.raises(RuntimeError):
        with codec.gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with codec.gc_paused():
            pass
        assert not gc.isenabled()  # it was off: left off
    finally:
        gc.enable()
