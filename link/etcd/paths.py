"""Path and key helpers (pure functions, no I/O).

A *path* is what users write (``'/app/db'`` or ``'app/db'``); a *key* is the
etcd key it names below the middleware's root ``prefix``.  Path segments are
used verbatim as key segments, so ``client['/app/db/host']`` is the etcd key
``/app/db/host`` when the prefix is ``/``: the same key ``etcdctl`` shows.
"""

from __future__ import annotations

from .errors import EtcdInvalidTree

#: Separator between key segments.
SEP = "/"

#: Most segments a key may have below the middleware's prefix: the path's
#: segments plus the nesting of the value written there.  Deeper paths and
#: values are refused (:class:`EtcdInvalidTree`) before any request, so that
#: every tree written can be read back by each API's recursive reader within
#: Python's default recursion limit (1,000 frames).
MAX_DEPTH = 256

#: Characters of a ``str`` key that stand for the bytes 0x80..0xFF of a key that
#: is not UTF-8 (Python's ``surrogateescape``, see :func:`decode_key`).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def check_text(text: str, what: str, *, text_only: bool = False) -> None:
    """Refuse a key segment (a path segment or a dict key) etcd cannot hold.

    A lone surrogate (``'\\ud800'``) has no bytes.  The surrogates
    ``'\\udc80'``..``'\\udcff'`` stand for the bytes of a key that is not UTF-8
    (see :func:`decode_key`): v3 keys can hold them, v2 keys cannot
    (``text_only``: v2 keys are text).

    :param text: the segment.
    :param what: how to name it in the message (``"path '/a'"``, ``"dict key at '/a'"``).
    :raises EtcdInvalidTree: naming ``what`` and the offending character.
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8", "strict" if text_only else "surrogateescape")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        why = (
            "v2 keys are UTF-8 text: it stands for a byte that is not UTF-8"
            if ord(char) in _ESCAPED_BYTES
            else "a lone surrogate has no UTF-8 form"
        )
        raise EtcdInvalidTree(
            f"{what}: character {char!r} at position {exc.start} cannot be stored ({why})"
        ) from None


def split_path(path: str, *, text_only: bool = False) -> tuple[str, ...]:
    """Split a user path into its segments.

    ``'/a/b'``, ``'a/b'`` and ``'/a/b/'`` give ``('a', 'b')``; ``'/'`` gives ``()`` (the root).

    :param path: a ``str`` path.
    :param text_only: the key must be UTF-8 text (v2): refuse every surrogate.
    :returns: the tuple of segments, each non-empty.
    :raises EtcdInvalidTree: if ``path`` is not a ``str``, is empty, has an empty,
        ``.`` or ``..`` segment (``'a//b'``, ``'/a/../b'``), more than
        :data:`MAX_DEPTH` segments, or a character no key can hold (see
        :func:`check_text`).
    """
    if not isinstance(path, str):
        raise EtcdInvalidTree(f"a path must be a str, not {type(path).__name__}: {path!r}")
    if path == "":
        raise EtcdInvalidTree("the empty string is not a path (use '/' for the root)")
    if path == SEP:
        return ()
    segments = tuple(path.removeprefix(SEP).removesuffix(SEP).split(SEP))
    if "" in segments or "." in segments or ".." in segments:  # name the first
        for segment in segments:
            if segment == "":
                raise EtcdInvalidTree(f"empty segment in path {path!r}", key=path)
            if segment in (".", ".."):
                raise EtcdInvalidTree(f"{segment!r} segments are not allowed: {path!r}", key=path)
    if len(segments) > MAX_DEPTH:
        raise EtcdInvalidTree(
            f"path {path[:60]!r}... has {len(segments)} segments, more than MAX_DEPTH={MAX_DEPTH}",
            key=path[:60],
        )
    if not path.isascii():
        check_text(path, f"path {path!r}", text_only=text_only)
    return segments


def normalize_prefix(prefix: str) -> str:
    """Return the root prefix as a key stem: ``'/'`` → ``''``, ``'/app/'`` → ``'/app'``.

    :raises EtcdInvalidTree: if the prefix has empty, ``.`` or ``..`` segments.
    """
    segments = split_path(prefix if prefix.startswith(SEP) else SEP + prefix)
    return "".join(SEP + s for s in segments)


def join_key(stem: str, segments: tuple[str, ...]) -> str:
    """Join a normalised prefix stem (see :func:`normalize_prefix`) and path segments.

    ``join_key('/app', ('db', 'host'))`` → ``'/app/db/host'``; with no segments the stem
    itself (``''`` stands for the root of the whole keyspace).
    """
    return f"{stem}{SEP}{SEP.join(segments)}" if segments else stem


def ancestor_keys(stem: str, segments: tuple[str, ...]) -> list[str]:
    """Keys of every ancestor of ``join_key(stem, segments)`` down from the root stem.

    ``ancestor_keys('/r', ('a', 'b'))`` → ``['/r', '/r/a']``; the empty root stem is
    skipped (``''`` is not an etcd key).  These keys must not hold leaves once a
    value is written below them.
    """
    keys = [stem] if stem and segments else []
    key = stem
    for segment in segments[:-1]:
        key = f"{key}{SEP}{segment}"
        keys.append(key)
    return keys


#: How keys travel between ``str`` and etcd's bytes (see :func:`encode_key`).
KEY_ENCODING = ("utf-8", "surrogateescape")


def encode_key(key: str) -> bytes:
    """The bytes etcd stores for ``key``: UTF-8, with the undecodable bytes of a key
    read from etcd (kept as surrogates by :func:`decode_key`) restored as they were.

    Every path that turns a key into bytes goes through here, so a key written by
    another tool in another encoding can be read, rewritten and deleted.
    """
    return key.encode(*KEY_ENCODING)


def decode_key(raw: bytes) -> str:
    """The ``str`` of a key read from etcd; bytes that are not UTF-8 become surrogates
    (:func:`encode_key` gives the same bytes back)."""
    return raw.decode(*KEY_ENCODING)


def below(key: str) -> tuple[bytes, bytes]:
    """The key range ``[key + '/', key + '0')`` holding every key below ``key``
    (``'0'`` is the byte after ``'/'``: :func:`range_end` of ``key + '/'``)."""
    own = encode_key(key)
    return own + b"/", own + b"0"


def range_end(prefix: bytes) -> bytes:
    """The etcd ``range_end`` that makes ``[prefix, range_end)`` cover every key
    starting with ``prefix``: the prefix with its last byte below ``0xff`` incremented
    and the trailing ``0xff`` bytes dropped.  ``b''`` and all-``0xff`` prefixes give
    ``b'\\x00'``, which etcd reads as "to the end of the keyspace".

    :param prefix: key prefix as bytes (UTF-8 for text keys).
    :returns: the exclusive end of the range, as bytes.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"
    return stripped[:-1] + bytes([stripped[-1] + 1])
