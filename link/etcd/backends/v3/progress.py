"""Progress of long reads and writes, for whoever shows it (``link-etcd``'s bars).

A plan does not know it is watched.  Both drivers (:func:`link.etcd.backends.v3.drive`
and :func:`link.etcd.aio.driver.drive`) ask :func:`watched` once per plan and, when
a callback was installed for the current context with :func:`reporting`, pass
each step through :func:`observe` and each answer through :func:`answered`:

>>> from link.etcd.backends.v3.progress import reporting
>>> seen = []
>>> with reporting(lambda kind, keys, total: seen.append((kind, keys, total))):
...     pass                                  # client[path] = tree, client[path], ...

The callback is called as ``report(kind, keys, left)``:

- ``kind`` is ``"read"`` or ``"write"``;
- ``keys`` is how many more keys were received (read) or sent in a txn (write);
- ``left`` is how many keys were still to come, ``keys`` included, when that
  became known with this call, else None: each page of a read says how many
  keys its range holds; a write of several txns says how many keys it changes
  before sending the first (with ``keys`` 0).  A bar's total is thus the keys
  done before the call plus ``left``.

Only reads of a subtree and writes of several txns report (a write that fits in
one txn is one request).  The callback lives in a :class:`contextvars.ContextVar`,
so it follows the code that installed it (a thread, an asyncio task) and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeAlias

from .engine import PAGE_SIZE, Concurrent
from .protocol import Range, RangeResult, Request, Txn, TxnResult

#: ``report(kind, keys, left)``; see the module's docstring.
Report: TypeAlias = Callable[[str, int, "int | None"], None]

_REPORT: ContextVar[Report | None] = ContextVar("link_etcd_progress", default=None)


@contextmanager
def reporting(report: Report) -> Iterator[None]:
    """Within the ``with`` block (this thread or task only), long reads and writes
    call ``report(kind, keys, left)`` as they go (see the module's docstring)."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


def watched() -> bool:
    """Whether a report is installed for the current context (then a driver passes
    steps through :func:`observe` and answers through :func:`answered`)."""
    return _REPORT.get() is not None


def observe(step: Any) -> Any:
    """``step``, or a :class:`Concurrent` step whose requests report as they are
    sent, when a report is installed."""
    report = _REPORT.get()
    if report is None or not isinstance(step, Concurrent):
        return step
    report("write", 0, step.keys)
    return Concurrent(_sent(step.requests, report), step.limit, step.keys)


def _sent(requests: Iterable[Request], report: Report) -> Iterator[Request]:
    for request in requests:
        yield request
        if isinstance(request, Txn):
            report("write", len(request.success), None)


def answered(step: Any, answer: Any) -> None:
    """Report the keys a read of a subtree received (a range limited to
    :data:`~link.etcd.backends.v3.engine.PAGE_SIZE` keys, alone or last in a txn),
    when a report is installed."""
    report = _REPORT.get()
    if report is None:
        return
    if isinstance(step, Txn) and isinstance(answer, TxnResult) and step.success:
        step, answer = step.success[-1], answer.responses[-1]
    if isinstance(step, Range) and isinstance(answer, RangeResult) and step.limit == PAGE_SIZE:
        # count: every key of the range; the answer holds them all, or the limit
        report("read", step.limit if answer.more else answer.count, answer.count)
