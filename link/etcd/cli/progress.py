"""Progress bars for ``load`` and ``dump`` of large trees (tqdm, on stderr).

A bar is shown only when stderr is a terminal, once the operation has taken
half a second (tqdm's ``delay``; ``TQDM_DELAY`` and tqdm's other ``TQDM_*``
variables change it), and only for the parts that take long: a read of a
subtree (keys received) and a write of several txns (keys sent).  Without tqdm
(``pip install 'link.etcd[cli]'``) or on v2, the command runs without one.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..backends.v3.progress import reporting
from .app import is_terminal

#: Seconds an operation runs before its bar appears.
DELAY = 0.5


@contextmanager
def progress_bar(kind: str, description: str) -> Iterator[None]:
    """Within the block, show the progress of the ``kind`` (``"read"`` or
    ``"write"``) operations of this thread as a bar labelled ``description``,
    when stderr is a terminal and tqdm is installed; else do nothing."""
    tqdm = _tqdm() if is_terminal("stderr") else None
    if tqdm is None:
        yield
        return
    options: dict[str, Any] = {} if "TQDM_DELAY" in os.environ else {"delay": DELAY}
    bar = tqdm(desc=description, unit=" keys", file=sys.stderr, leave=False, **options)

    def report(seen: str, keys: int, left: int | None) -> None:
        if seen != kind:
            return
        if left is not None:
            bar.total = bar.n + left
            bar.refresh()
        if keys:
            bar.update(keys)

    try:
        with reporting(report):
            yield
    finally:
        bar.close()


def _tqdm() -> Any:
    """tqdm's bar class, or None when it is not installed."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
