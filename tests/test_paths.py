"""Pure path helpers: no etcd needed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd.errors import EtcdInvalidTree
from link.etcd.paths import (
    MAX_DEPTH,
    ancestor_keys,
    below,
    decode_key,
    encode_key,
    join_key,
    normalize_prefix,
    range_end,
    split_path,
)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/a/b", ("a", "b")),
        ("a/b", ("a", "b")),
        ("/a/b/", ("a", "b")),
        ("/", ()),
        ("/50%", ("50%",)),
        ("/a b/ü", ("a b", "ü")),
    ],
)
def test_split_path(path: str, segments: tuple[str, ...]) -> None:
    assert split_path(path) == segments


@pytest.mark.parametrize("path", ["", "//", "a//b", "/a/./b", "/a/../b", "..", "/a//"])
def test_split_path_rejects_bad_paths(path: str) -> None:
    with pytest.raises(EtcdInvalidTree):
        split_path(path)


def test_split_path_rejects_non_str() -> None:
    with pytest.raises(EtcdInvalidTree, match="must be a str"):
        split_path(b"/a")  # type: ignore[arg-type]


def test_prefix_and_join() -> None:
    assert normalize_prefix("/") == ""
    assert normalize_prefix("/app/") == "/app"
    assert normalize_prefix("app") == "/app"
    assert join_key("", ("a", "b")) == "/a/b"
    assert join_key("/app", ()) == "/app"
    assert ancestor_keys("/r", ("a", "b")) == ["/r", "/r/a"]
    assert ancestor_keys("", ("a", "b")) == ["/a"]


_SEGMENT = st.text(st.sampled_from("ab%é"), min_size=1, max_size=3)


@given(st.sampled_from(["", "/r", "/r/s"]), st.lists(_SEGMENT, max_size=5).map(tuple))
def test_keys_are_the_stem_and_segments_joined_by_slashes(
    stem: str, segments: tuple[str, ...]
) -> None:
    key = join_key(stem, segments)
    assert key == stem + "".join("/" + s for s in segments)
    # the ancestors: every shorter join, from the stem down, never the empty key
    ancestors = [join_key(stem, segments[:i]) for i in range(len(segments))]
    assert ancestor_keys(stem, segments) == [k for k in ancestors if k]
    assert all(key.startswith(a + "/") for a in ancestor_keys(stem, segments))


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/a/", b"/a0"),
        (b"a\xff", b"b"),
        (b"a\xfe\xff\xff", b"a\xff"),
        (b"\xff\xff", b"\x00"),
        (b"", b"\x00"),
    ],
)
def test_range_end(prefix: bytes, end: bytes) -> None:
    assert range_end(prefix) == end


@pytest.mark.parametrize("path", ["/a/\ud800", "/\udfff/b", "/x\udbff"])
def test_split_path_refuses_lone_surrogates(path: str) -> None:
    with pytest.raises(EtcdInvalidTree, match="lone surrogate") as info:
        split_path(path)
    assert repr(path) in str(info.value)


def test_key_bytes_that_are_not_utf8_are_paths_on_v3_only() -> None:
    path = "/a/" + decode_key(b"\x80\xff")
    assert split_path(path) == ("a", "\udc80\udcff")
    assert encode_key(path) == b"/a/\x80\xff"
    with pytest.raises(EtcdInvalidTree, match="v2 keys are UTF-8 text"):
        split_path(path, text_only=True)
    assert split_path("/a/ü", text_only=True) == ("a", "ü")


def test_split_path_depth_limit() -> None:
    assert len(split_path("/a" * MAX_DEPTH)) == MAX_DEPTH
    with pytest.raises(EtcdInvalidTree, match=f"more than MAX_DEPTH={MAX_DEPTH}"):
        split_path("/a" * (MAX_DEPTH + 1))


@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]))
    | st.sampled_from(["", "/a", "\udcff", "a\udc80b"])
)
def test_below_is_the_range_of_every_key_under_key_slash(key: str) -> None:
    prefix = encode_key(key + "/")
    assert below(key) == (prefix, range_end(prefix))


@given(st.lists(st.sampled_from(["a", "b.c", "", ".", "..", "..."]), min_size=1, max_size=6))
def test_split_path_refuses_the_first_bad_segment(names: list[str]) -> None:
    path = "/" + "/".join(names)
    body = path.removeprefix("/").removesuffix("/")
    bad = next((name for name in body.split("/") if name in ("", ".", "..")), None)
    if path == "/" or bad is None:
        assert split_path(path) == (tuple(body.split("/")) if body else ())
        return
    with pytest.raises(EtcdInvalidTree) as caught:
        split_path(path)
    expected = "empty segment" if bad == "" else f"{bad!r} segments are not allowed"
    assert str(caught.value).startswith(expected)
