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
