"""Hypothesis strategies shared by the tests."""

from typing import Any

from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


def json_documents(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Random JSON documents: a dict at the top, nested dicts and lists, any scalars."""
    tree = st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )
    return st.dictionaries(st.text(max_size=8), tree, max_size=5)


#: Text with anything Python strings may hold: lone surrogates (``'\ud800'``), the
#: surrogates that stand for non-UTF-8 key bytes (``'\udc80'``), NUL, ``/``, ``%``.
any_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=())
    | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    | st.sampled_from(["/", "%", ".", "\x00", "0"]),
    max_size=12,
)

#: Scalars a caller might pass, good and bad: every storable scalar type, bytes
#: (UTF-8 or not), NaN and infinities, and types that cannot be stored.
any_scalars = (
    scalars
    | any_text
    | st.binary(max_size=8)
    | st.floats()
    | st.integers()
    | st.sampled_from([object(), {1, 2}, 1j, frozenset(), Ellipsis, type])
)


def deep_tree(depth: int, leaf: Any = 1) -> Any:
    """``{'a': {'a': ... leaf}}``, ``depth`` dicts deep (no recursion to build it)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def python_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary Python values: nested dicts (keys of any text, sometimes not str),
    lists and tuples of any scalars, and now and then a tree nested deeper than
    :data:`~link.etcd.paths.MAX_DEPTH`."""
    keys = any_text | st.sampled_from([1, None, b"k", ("t",)])
    tree = st.recursive(
        any_scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.lists(children, max_size=3).map(tuple)
            | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )
    deep = st.builds(deep_tree, st.integers(min_value=250, max_value=1200), tree)
    return tree | deep
