"""The asyncio driver of the v3 engine: the same plans, run over an async transport.

:mod:`link.etcd.backends.v3.engine` and :mod:`~link.etcd.backends.v3.guarded`
write each operation once, as a generator of steps; :func:`drive` performs the
steps with ``await`` where :func:`link.etcd.backends.v3.drive` blocks:

- a request: ``await transport.call(request)`` (failover included);
- :class:`~link.etcd.backends.v3.engine.Concurrent`: :func:`call_many`, tasks
  with at most ``limit`` in flight, the requests built as there is room;
- :class:`~link.etcd.backends.v3.engine.Sleep`: :func:`asyncio.sleep`;
- :class:`~link.etcd.backends.v3.engine.Call`: the function is called and, when
  it returns an awaitable (an ``async def`` function), awaited.

Cancelling the task that awaits :func:`drive` stops the plan at the step it is
waiting on: the requests in flight are cancelled (and awaited), nothing more is
sent.  A request already sent may still be applied by etcd: a write that fits
in one txn leaves the old tree or the new one; a larger write may leave some of
its txns applied (see ``docs/asyncio.md``).  A read-only txn is never cancelled
while etcd runs it: etcd before 3.5.5 crashes when one is (``panic: unexpected
error during txn``, etcd-io/etcd#14110); the cancelled task returns at once and
the read ends in the background, within ``read_timeout`` (:func:`send`).  A plain
``range`` (how a value is read) is cancelled at once: etcd handles that (checked
on 3.5.1 with 60 reads of a 20,000-key tree cancelled 0 to 30 ms in).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from ..backends.v3 import progress
from ..backends.v3.engine import CONTROL_STEPS, Call, Concurrent, Plan, R, Sleep
from ..backends.v3.protocol import Range, Request, Result, Txn, WatchCreate, WatchResult
from ..backends.v3.transport import Failover
from ..errors import EtcdError
from ..settings import EtcdSettings


class AsyncWatchStream(Protocol):
    """One open watch stream: ``async for`` its answers; :meth:`cancel` (a plain
    call, from any task) ends an iteration waiting on it; :meth:`aclose` closes it."""

    def __aiter__(self) -> AsyncIterator[WatchResult]: ...

    def cancel(self) -> None: ...

    def forget_token(self) -> None: ...

    async def aclose(self) -> None: ...


class AsyncTransport(Protocol):
    """An asyncio carrier of v3 requests to one cluster (the async twin of
    :class:`link.etcd.backends.v3.transport.Transport`).

    :attr pending: the requests :func:`send` let run on after their caller was
        cancelled; :meth:`aclose` waits for them.
    """

    endpoints: tuple[str, ...]
    failover: Failover[Any]
    pending: set[asyncio.Task[Any]]

    async def call(self, request: Request, key: str | None = None) -> Result:
        """Send one request (failing over between endpoints); its answer.

        :raises EtcdError: etcd refused it, or no endpoint answered.
        """
        ...

    async def open_watch(self, create: WatchCreate, key: str | None = None) -> AsyncWatchStream:
        """Open a watch stream on the member :attr:`failover` would try first.

        :raises Unreachable: that member did not accept it within ``read_timeout``.
        """
        ...

    async def aclose(self) -> None:
        """Close every channel or connection."""
        ...


def open_transport(settings: EtcdSettings) -> AsyncTransport:
    """The asyncio transport ``settings.transport`` names (``'grpc'``: ``grpc.aio``;
    ``'gateway'``: httpx).  No connection is made before the first request."""
    if settings.transport == "gateway":
        from .gateway import AsyncGatewayTransport

        return AsyncGatewayTransport(settings)
    from .grpc import AsyncGrpcTransport

    return AsyncGrpcTransport(settings)


async def drive(plan: Plan[R], transport: AsyncTransport, key: str | None = None) -> R:
    """Run ``plan`` to its end over ``transport``; its result.

    A step that raises an :class:`EtcdError` has it thrown into the plan (at its
    ``yield``), which may catch it and go on.

    :raises EtcdError: what a request raised and the plan did not catch (the plan
        is closed), or what the plan raised; an error naming no endpoint is given
        the transport's.
    """
    answer: Any = None
    error: EtcdError | None = None
    watched = progress.watched()
    try:
        while True:
            if error is None:
                step = plan.send(answer)
            else:
                step, error = plan.throw(error), None
            if watched:
                step = progress.observe(step)
            try:
                answer = await _perform(step, transport, key, watched)
            except EtcdError as exc:
                error = exc
    except StopIteration as stop:
        result: R = stop.value  # what the plan returned: a Plan[R] returns an R
        return result
    except EtcdError as exc:
        if not exc.endpoints:
            exc.endpoints = transport.endpoints
        raise
    finally:
        plan.close()


async def _perform(step: Any, transport: AsyncTransport, key: str | None, watched: bool) -> Any:
    """One step of a plan (see :mod:`link.etcd.backends.v3.engine`); its answer.
    ``watched``: a progress report is installed."""
    kind = type(step)
    if kind not in CONTROL_STEPS:  # a request: most steps
        answer = await send(transport, step, key)
        if watched:
            progress.answered(step, answer)
        return answer
    if kind is Concurrent:
        return await call_many(transport, step.requests, step.limit, key)
    if kind is Sleep:
        return await asyncio.sleep(step.seconds)
    if kind is Call:
        result = step.function(step.argument)
        return (await result) if inspect.isawaitable(result) else result
    return await asyncio.sleep(0)  # Pause


def _cancel_safe(request: Request) -> bool:
    """False for a read-only txn: etcd before 3.5.5 panics when the context of one
    is cancelled while it reads (etcd-io/etcd#14110); writes go through raft."""
    if type(request) is not Txn:
        return True
    return not all(type(op) is Range for op in (*request.success, *request.failure))


async def send(transport: AsyncTransport, request: Request, key: str | None = None) -> Result:
    """``await transport.call(request)``; a read-only txn is shielded from the
    caller's cancellation (it runs to its end, in :attr:`AsyncTransport.pending`)."""
    if _cancel_safe(request):
        return await transport.call(request, key)
    task = asyncio.ensure_future(transport.call(request, key))
    transport.pending.add(task)
    task.add_done_callback(_forget(transport.pending))
    return await asyncio.shield(task)


def _forget(pending: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody may be waiting for it any more

    return done


async def settle(transport: AsyncTransport) -> None:
    """Wait for the requests still running for cancelled callers (within
    ``read_timeout`` per endpoint)."""
    while transport.pending:
        await asyncio.wait(set(transport.pending))


async def call_many(
    transport: AsyncTransport, requests: Iterable[Request], limit: int, key: str | None = None
) -> list[Result | EtcdError]:
    """Send ``requests`` with at most ``limit`` in flight (one task each, taking the
    next request from the iterable only when there is room); each answer or
    :class:`EtcdError`, in order.  Cancelled, it cancels and awaits the requests
    in flight before it re-raises."""
    results: list[Result | EtcdError] = []
    pending: deque[asyncio.Task[Result | EtcdError]] = deque()
    try:
        for request in requests:
            if len(pending) >= limit:
                results.append(await pending.popleft())
            pending.append(asyncio.ensure_future(_outcome(send(transport, request, key))))
        while pending:
            results.append(await pending.popleft())
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    return results


async def _outcome(call: Awaitable[Result]) -> Result | EtcdError:
    try:
        return await call
    except EtcdError as exc:
        return exc
