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


def split_path(path: str) -> tuple[str, ...]:
    """Split a user path into its segments.

    ``'/a/b'``, ``'a/b'`` and ``'/a/b/'`` give ``('a', 'b')``; ``'/'`` gives ``()`` (the root).

    :param path: a ``str`` path.
    :returns: the tuple of segments, each non-empty.
    :raises EtcdInvalidTree: if ``path`` is not a ``str``, is empty, or has an empty,
        ``.`` or ``..`` segment (``'a//b'``, ``'/a/../b'``).
    """
    if not isinstance(path, str):
        raise EtcdInvalidTree(f"a path must be a str, not {type(path).__name__}: {path!r}")
    if path == "":
        raise EtcdInvalidTree("the empty string is not a path (use '/' for the root)")
    if path == SEP:
        return ()
    body = path.removeprefix(SEP).removesuffix(SEP)
    segments = tuple(body.split(SEP))
    for segment in segments:
        if segment == "":
            raise EtcdInvalidTree(f"empty segment in path {path!r}", key=path)
        if segment in (".", ".."):
            raise EtcdInvalidTree(f"{segment!r} segments are not allowed: {path!r}", key=path)
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
    return stem + "".join(SEP + s for s in segments)


def ancestor_keys(stem: str, segments: tuple[str, ...]) -> list[str]:
    """Keys of every ancestor of ``join_key(stem, segments)`` down from the root stem.

    ``ancestor_keys('/r', ('a', 'b'))`` → ``['/r', '/r/a']``; the empty root stem is
    skipped (``''`` is not an etcd key).  These keys must not hold leaves once a
    value is written below them.
    """
    keys = [join_key(stem, segments[:i]) for i in range(len(segments))]
    return [k for k in keys if k]


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
    """The key range ``[key + '/', range_end)`` holding every key below ``key``."""
    prefix = encode_key(key + SEP)
    return prefix, range_end(prefix)


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
