"""Progress of long reads and writes, for whoever shows it (``link-etcd``'s bars).

A plan does not know it is watched.  Both drivers (:func:`link.etcd.backends.v3.drive`
and :func:`link.etcd.aio.driver.drive`) pass each step through :func:`observe` and
each answer through :func:`answered`; they do nothing unless a callback was
installed for the current context with :func:`reporting`:

>>> from link.etcd.backends.v3.progress import reporting
>>> seen = []
>>> with reporting(lambda kind, keys, total: seen.append((kind, keys, total))):
...     pass                                  # client[path] = tree, client[path], ...

The callback is called as ``report(kind, keys, total)``:

- ``kind`` is ``"read"`` or ``"write"``;
- ``keys`` is how many more keys were received (read) or sent in a txn (write);
- ``total`` is how many keys the operation handles, when that became known with
  this call (a read: with its first answer; a write of several txns: before the
  first is sent, with ``keys`` 0), else None.

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

#: ``report(kind, keys, total)``; see the module's docstring.
Report: TypeAlias = Callable[[str, int, "int | None"], None]

_REPORT: ContextVar[Report | None] = ContextVar("link_etcd_progress", default=None)


@contextmanager
def reporting(report: Report) -> Iterator[None]:
    """Within the ``with`` block (this thread or task only), long reads and writes
    call ``report(kind, keys, total)`` as they go (see the module's docstring)."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


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
    """Report the keys a read of a subtree received (the paged range below the
    key, :data:`~link.etcd.backends.v3.engine.PAGE_SIZE` keys at most per answer),
    when a report is installed."""
    report = _REPORT.get()
    if report is None:
        return
    if isinstance(step, Txn) and isinstance(answer, TxnResult):
        ops = step.success
        if ops and isinstance(ops[-1], Range) and ops[-1].limit == PAGE_SIZE:
            last = answer.responses[-1]
            if isinstance(last, RangeResult):
                report("read", _received(ops[-1], last), last.count)
    elif isinstance(step, Range) and isinstance(answer, RangeResult) and step.limit == PAGE_SIZE:
        report("read", _received(step, answer), None)


def _received(request: Range, answer: RangeResult) -> int:
    """Keys in a limited range's answer: the limit when there are more, else all
    that were left (``count`` counts the whole range)."""
    return request.limit if answer.more else answer.count
