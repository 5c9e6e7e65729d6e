"""CacheFile: the last configuration read from etcd, kept on local disk to boot from.

Every successful read of a configuration's layers is saved with its revision
and the time; a service that starts while etcd cannot be reached boots from it
and knows it is stale.  The file is JSON::

    {"format": "link.etcd configuration cache", "version": 1,
     "entries": {"<etcd keys of the layers, one per line>":
                 {"keys": [...], "revision": 42, "saved_at": 1764590000.0,
                  "layers": [[["<key, base64>", "<value, base64>"], ...], ...]}}}

one entry per list of layers (a b3j0f driver may serve several conf paths
from one file), holding the raw key-values each layer was decoded from, so
that the configuration booted from the cache is exactly what was read (types,
bytes that are not UTF-8 and all).

Writes are atomic: a temporary file in the same directory, written, ``fsync``-ed,
then renamed over the old one (and the directory ``fsync``-ed), created with
permissions 0600 because configuration may hold secrets.  Writes from several
processes do not corrupt the file; the last one wins (an entry that only
another process saved may be dropped, and saved again by its next read).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import EtcdSettingsError
from ..paths import decode_key, encode_key

#: The ``format`` field of a cache file.
FORMAT = "link.etcd configuration cache"
#: The ``version`` field this code writes and reads.
VERSION = 1

Pairs = list[tuple[str, bytes]]


class CacheFileError(EtcdSettingsError):
    """A configuration cache file is missing, corrupt, or written for other keys;
    it is never used then.  The message names the file."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class CacheFile:
    """A configuration cache file at ``path`` (see the module docstring).

    :param path: the file; its directory must exist and be writable.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._saved: dict[str, tuple[int, list[Any]]] = {}

    def __repr__(self) -> str:
        return f"CacheFile({str(self.path)!r})"

    # -- writing ------------------------------------------------------------

    def save(self, keys: Sequence[str], revision: int, layers: Sequence[Pairs]) -> None:
        """Save the layers read at ``revision`` under ``keys`` (skipped when this
        object already saved exactly that).

        :raises CacheFileError: the file cannot be written (naming it and why).
        """
        name = "\n".join(keys)
        encoded = [[[_b64(encode_key(k)), _b64(v)] for k, v in pairs] for pairs in layers]
        with self._lock:
            if self._saved.get(name) == (revision, encoded):
                return
            entries = self._entries_or_empty()
            entries[name] = {
                "keys": list(keys),
                "revision": revision,
                "saved_at": time.time(),
                "layers": encoded,
            }
            document = {"format": FORMAT, "version": VERSION, "entries": entries}
            try:
                self._write(json.dumps(document, sort_keys=True).encode("utf-8"))
            except OSError as exc:
                raise CacheFileError(
                    f"cannot write the configuration cache file {str(self.path)!r}: {exc}"
                ) from exc
            self._saved[name] = (revision, encoded)

    def _entries_or_empty(self) -> dict[str, Any]:
        """The entries already in the file; none when it is missing or unreadable
        (a fresh read is about to replace it)."""
        try:
            return dict(self._document()["entries"])
        except (CacheFileError, OSError, KeyError, TypeError, ValueError):
            return {}

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:  # mkstemp creates it 0600
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- reading ------------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError as exc:
            raise CacheFileError(
                f"no configuration cache file {str(self.path)!r} (nothing was read from "
                "etcd with this cache_file yet)"
            ) from exc
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise CacheFileError(
                f"configuration cache file {str(self.path)!r} is corrupt (not JSON: {exc})"
            ) from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise CacheFileError(f"{str(self.path)!r} is not a link.etcd configuration cache file")
        if document.get("version") != VERSION or not isinstance(document.get("entries"), dict):
            raise CacheFileError(
                f"configuration cache file {str(self.path)!r} has version "
                f"{document.get('version')!r}, this link.etcd reads version {VERSION}"
            )
        return document

    def load(
        self, keys: Sequence[str], cause: BaseException | None = None
    ) -> tuple[int, float, list[Pairs]]:
        """``(revision, saved_at, layers)`` saved for ``keys``.

        :param cause: the error that made the caller fall back to the cache
            (chained to a :class:`CacheFileError`).
        :raises CacheFileError: the file is missing, is not a cache file, is
            corrupt, or holds no entry for ``keys`` (naming the file).
        """
        try:
            document = self._document()
        except CacheFileError as exc:
            raise exc from cause
        entry = document["entries"].get("\n".join(keys))
        if entry is None:
            held = sorted(document["entries"])
            raise CacheFileError(
                f"configuration cache file {str(self.path)!r} holds no configuration for "
                f"{list(keys)!r} (it holds {[k.split(chr(10)) for k in held]!r})"
            ) from cause
        try:
            layers = [
                [
                    (
                        decode_key(base64.b64decode(k, validate=True)),
                        base64.b64decode(v, validate=True),
                    )
                    for k, v in pairs
                ]
                for pairs in entry["layers"]
            ]
            revision, saved_at = int(entry["revision"]), float(entry["saved_at"])
            if entry["keys"] != list(keys) or len(layers) != len(keys):
                raise ValueError("its keys do not match its layers")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise CacheFileError(
                f"configuration cache file {str(self.path)!r} is corrupt ({exc!r})"
            ) from exc
        return revision, saved_at, layers

    def describe_fallback(self, error: BaseException, revision: int, saved_at: float) -> str:
        """The warning given when configuration comes from this file."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(saved_at))
        age = max(0.0, time.time() - saved_at)
        return (
            f"etcd cannot be reached ({error}); configuration from the cache file "
            f"{str(self.path)!r}, saved {when} ({age:.0f} s ago) at revision {revision}: "
            "stale until etcd answers"
        )
