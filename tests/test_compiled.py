"""The compiled modules against their source.

``setup.py`` compiles ``link/etcd/decoding.py`` (the read path's hot loop) and
``link/etcd/encoding.py`` (the write path's) with mypyc; Python then imports the
compiled modules.  These tests load the same files as Python source beside them
and check that both give the same values (and the same errors) on generated
input, and that each compiled module was built from its file as it is now.
Where a module runs uncompiled (``LINK_ETCD_COMPILE=0``, no C compiler) there is
nothing to compare and its tests are skipped; ``make test`` checks first that
both run compiled.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeAlias

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd import decoding, encoding

from .helpers import range_pairs, same
from .strategies import python_values

COMPILED = {module.__name__: module for module in (decoding, encoding)}


def _load_source(module: ModuleType) -> ModuleType:
    """``module`` loaded again from its ``.py`` file, under another name."""
    name = module.__name__.rpartition(".")[2]
    path = os.path.join(os.path.dirname(module.__file__ or ""), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"link.etcd._{name}_source", path)
    assert spec is not None
    assert spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    return source


SOURCE = {name: _load_source(module) for name, module in COMPILED.items()}


def compiled_only(module: ModuleType) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not module.COMPILED, reason=f"{module.__name__} runs as Python source here"
    )


#: A function of the modules, by name, or a function taking the module first.
Function: TypeAlias = "str | Callable[..., Any]"


def outcome(module: ModuleType, function: Function, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``('value', v)``, ``('unsorted', None)`` or ``('raises', (type, message))``."""
    try:
        if isinstance(function, str):
            value = getattr(module, function)(*args, **kwargs)
        else:
            value = function(module, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001  # any error: its class is compared
        return "raises", (type(exc), str(exc))
    if value is getattr(module, "UNSORTED", object()):
        return "unsorted", None
    return "value", value


def agree(
    module: ModuleType, function: Function, *args: Any, messages: bool = True, **kwargs: Any
) -> str:
    """Assert the compiled ``module`` and its source give the same outcome (see
    :func:`outcome`; the errors' messages too unless ``messages`` is false); its kind."""
    pure = SOURCE[module.__name__]
    compiled = outcome(module, function, *args, **kwargs)
    expected = outcome(pure, function, *args, **kwargs)
    assert compiled[0] == expected[0], (compiled, expected)
    if compiled[0] == "value":
        assert same(compiled[1], expected[1])
        assert repr(compiled[1]) == repr(expected[1])  # dict order and float text too
    elif compiled[0] == "raises":
        assert compiled[1][0] == expected[1][0], (compiled, expected)
        if messages:
            assert compiled[1][1] == expected[1][1]
    return compiled[0]


@pytest.mark.parametrize("name", sorted(COMPILED))
def test_each_compiled_module_is_built_from_the_file_as_it_is(name: str) -> None:
    module, pure = COMPILED[name], SOURCE[name]
    if not module.COMPILED:
        pytest.skip(f"{name} runs as Python source here")
    assert module.__file__ is not None
    assert pure.__file__ is not None
    assert not module.__file__.endswith(".py")
    assert os.path.getmtime(module.__file__) >= os.path.getmtime(pure.__file__), (
        f"{pure.__file__} changed after it was compiled: reinstall (make venv) to rebuild it"
    )
    assert not pure.COMPILED


# -- decoding (reads) ------------------------------------------------------------


@compiled_only(decoding)
@given(python_values())
def test_a_tree_reads_back_the_same_compiled_or_not(value: Any) -> None:
    pairs = range_pairs(value, "/base")
    if pairs is not None:
        agree(decoding, "decode_sorted", pairs, "/base")


_SEGMENTS = st.sampled_from(["a", "b", "", "%25", "%2F", "0" * 20, "0" * 19 + "1", "a-b", "é"])
_KEYS = st.lists(_SEGMENTS, max_size=4).map(lambda segments: "/".join(["", "r", *segments]))


@compiled_only(decoding)
@given(
    st.lists(st.tuples(_KEYS | st.sampled_from(["/", "/q", "/r-x", "r"]), st.binary(max_size=6))),
    st.booleans(),
)
def test_any_pairs_decode_the_same_or_give_up_the_same(
    pairs: list[tuple[str, bytes]], in_order: bool
) -> None:
    if in_order:
        pairs = sorted(dict(pairs).items())
    agree(decoding, "decode_sorted", pairs, "/r")


_TEXTS = st.text(alphabet=st.sampled_from([*'-+.eE019 \t\n\r"[]{}tfnrueals%/', "\u0661", "\ud800"]))


@compiled_only(decoding)
@given(_TEXTS)
def test_a_value_decodes_the_same_compiled_or_not(text: str) -> None:
    agree(decoding, "decode_text", text)
    agree(decoding, "unescape_name", text)
    agree(decoding, "decode_leaf", text.encode("utf-8", "surrogatepass"))


@compiled_only(decoding)
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
    # the compiled module's own type checks word their TypeErrors differently
    assert agree(decoding, "decode_sorted", pairs, "/r", messages=False) == "raises"


# -- encoding (writes) -----------------------------------------------------------


def _pairs(module: ModuleType, value: Any, text_only: bool) -> list[tuple[str, bytes]]:
    """``value`` encoded and flattened at ``/base`` by ``module``."""
    node = module._encode(value, "/base", 1, text_only)
    return module.flatten(node, "/base")  # type: ignore[no-any-return]


@compiled_only(encoding)
@given(python_values(), st.booleans())
def test_a_tree_encodes_the_same_or_is_refused_the_same(value: Any, text_only: bool) -> None:
    agree(encoding, _pairs, value, text_only)


@compiled_only(encoding)
@given(_TEXTS | st.binary(max_size=6) | st.integers() | st.floats() | st.none() | st.booleans())
def test_a_leaf_encodes_the_same_compiled_or_not(value: Any) -> None:
    agree(encoding, "encode_leaf", value, "/w")
    agree(encoding, "encode_leaf", value, "/w", text_only=True)
    if isinstance(value, str):
        agree(encoding, "escape_name", value)
        agree(encoding, "is_position", value)


@compiled_only(encoding)
@pytest.mark.parametrize(
    ("value", "text_only"),
    [
        ({"a": [1, {"b": math.nan}]}, False),
        ({"a": {2: "x"}}, False),
        ({"k\ud800": 1}, False),
        ({"k": b"\xff"}, True),
        ({"k": object()}, False),
        ([10**5000], False),
        ({"a": "\ud800"}, False),
    ],
)
def test_bad_trees_raise_the_same_error(value: Any, text_only: bool) -> None:
    assert agree(encoding, _pairs, value, text_only) == "raises"


@compiled_only(encoding)
@given(st.integers(min_value=0, max_value=10**20 - 1))
def test_positions_are_the_same_compiled_or_not(index: int) -> None:
    assert agree(encoding, "position", index) == "value"
