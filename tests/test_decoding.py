"""The compiled read path against its source.

``setup.py`` compiles ``link/etcd/decoding.py`` with mypyc; Python then imports
the compiled module.  These tests load the same file as Python source beside it
and check that both give the same values (and the same errors) on generated
input, and that the compiled module was built from the file as it is now.
Where the module runs uncompiled (``LINK_ETCD_COMPILE=0``, no C compiler) there
is nothing to compare and they are skipped; ``make test`` checks first that it
runs compiled.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd import codec, decoding

from .helpers import range_pairs, same
from .strategies import python_values

pytestmark = pytest.mark.skipif(
    not decoding.COMPILED, reason="link.etcd.decoding runs as Python source here"
)

SOURCE = os.path.join(os.path.dirname(codec.__file__), "decoding.py")


def _load_source() -> ModuleType:
    spec = importlib.util.spec_from_file_location("link.etcd._decoding_source", SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PURE = _load_source()


def outcome(module: ModuleType, function: str, *args: Any) -> tuple[str, Any]:
    """``('value', v)``, ``('unsorted', None)`` or ``('raises', exception type)``."""
    try:
        value = getattr(module, function)(*args)
    except Exception as exc:  # noqa: BLE001  # any error: its class is compared
        return "raises", type(exc)
    if value is module.UNSORTED:
        return "unsorted", None
    return "value", value


def agree(function: str, *args: Any) -> str:
    """Assert both modules give the same outcome (see :func:`outcome`); its kind."""
    compiled, pure = outcome(decoding, function, *args), outcome(PURE, function, *args)
    assert compiled[0] == pure[0], (compiled, pure)
    if compiled[0] == "value":
        assert same(compiled[1], pure[1])
        assert repr(compiled[1]) == repr(pure[1])  # dict order and float text too
    else:
        assert compiled[1] == pure[1]
    return compiled[0]


def test_the_compiled_module_is_built_from_the_file_as_it_is() -> None:
    assert decoding.__file__ is not None
    assert not decoding.__file__.endswith(".py")
    assert os.path.getmtime(decoding.__file__) >= os.path.getmtime(SOURCE), (
        f"{SOURCE} changed after it was compiled: reinstall (make venv) to rebuild it"
    )
    assert not PURE.COMPILED


@given(python_values())
def test_a_tree_reads_back_the_same_compiled_or_not(value: Any) -> None:
    pairs = range_pairs(value, "/base")
    if pairs is not None:
        agree("decode_sorted", pairs, "/base")


_SEGMENTS = st.sampled_from(["a", "b", "", "%25", "%2F", "0" * 20, "0" * 19 + "1", "a-b", "é"])
_KEYS = st.lists(_SEGMENTS, max_size=4).map(lambda segments: "/".join(["", "r", *segments]))


@given(
    st.lists(st.tuples(_KEYS | st.sampled_from(["/", "/q", "/r-x", "r"]), st.binary(max_size=6))),
    st.booleans(),
)
def test_any_pairs_decode_the_same_or_give_up_the_same(
    pairs: list[tuple[str, bytes]], in_order: bool
) -> None:
    if in_order:
        pairs = sorted(dict(pairs).items())
    agree("decode_sorted", pairs, "/r")


@given(st.text(alphabet=st.sampled_from([*'-+.eE019 \t\n\r"[]{}tfnrueals%/', "\u0661", "\ud800"])))
def test_a_value_decodes_the_same_compiled_or_not(text: str) -> None:
    agree("decode_text", text)
    agree("unescape_name", text)
    agree("decode_leaf", text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "pairs",
    [
        [(b"/r/a", b"1")],  # a key that is not a str
        [("/r/a", "1")],  # a value that is not bytes
        [("/r/a",)],  # no value
        [None],
    ],
)
def test_bad_pairs_raise_the_same_error(pairs: list[Any]) -> None:
    assert agree("decode_sorted", pairs, "/r") == "raises"
