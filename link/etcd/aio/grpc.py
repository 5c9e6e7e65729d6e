"""The asyncio gRPC transport: etcd's native v3 API over ``grpc.aio`` channels.

Everything but the waiting is :mod:`link.etcd.backends.v3.grpc`'s: the method
table (:data:`~link.etcd.backends.v3.grpc.UNARY`: request to message, answer to
result), the channel options and TLS credentials, the method callables of an
:class:`~link.etcd.backends.v3.grpc.Endpoint`, and the :func:`verdict` on a
failed call; :class:`~link.etcd.backends.v3.transport.Failover` picks the member.
One ``grpc.aio`` channel per endpoint carries every call (HTTP/2 streams, no
thread per request).  Watch streams carry etcd's require-leader option
(``hasleader=true``); one silent for ``WATCH_IDLE_SECONDS`` asks etcd for a
progress answer and reads the watched key once (a linearizable read, which
needs a quorum), and is given up when either fails within ``read_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from ..backends.base import WATCH_IDLE_SECONDS
from ..backends.v3 import messages as pb
from ..backends.v3 import protocol as v3
from ..backends.v3.grpc import (
    PROGRESS_REQUEST,
    UNARY,
    Endpoint,
    channel_args,
    lease_result,
    message_of,
    status,
    verdict,
    watch_request,
    watch_result,
)
from ..backends.v3.transport import Failover, Unreachable
from ..backends.v3.watch import REQUIRE_LEADER
from ..errors import EtcdAuthError, EtcdError
from ..settings import EtcdSettings
from .watch import ENDED, TIMED_OUT, Reader, running

T = TypeVar("T")


def _channel(url: str, settings: EtcdSettings) -> grpc.aio.Channel:
    target, credentials, options = channel_args(url, settings)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options)
    return grpc.aio.secure_channel(target, credentials, options)


class AsyncGrpcTransport:
    """v3 requests over ``grpc.aio`` channels, one per endpoint of ``settings.urls``.
    Its channels belong to the event loop that made them: use it from that loop
    only (the client makes it at its first request).  ``read_timeout`` is each
    call's deadline on each member; TLS files and credentials as for
    :class:`~link.etcd.backends.v3.grpc.GrpcTransport`.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        self.failover: Failover[Endpoint] = Failover.of(
            settings, lambda url: Endpoint(url, _channel(url, settings))
        )
        self._auth_lock = asyncio.Lock()
        self.pending: set[asyncio.Task[Any]] = set()
        #: seconds a watch stream may stay silent before its member is checked
        #: (:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` by default; read
        #: when a stream opens; :func:`link.etcd.testing.set_watch_idle` sets it)
        self.watch_idle_seconds = WATCH_IDLE_SECONDS

    def __repr__(self) -> str:
        return f"AsyncGrpcTransport(endpoints={self.endpoints!r})"

    # -- auth --------------------------------------------------------------------

    async def _metadata(self, member: Endpoint) -> tuple[tuple[str, str], ...] | None:
        if not self.settings.username:
            return None
        if member.token is None:
            await self._authenticate(member)
        return (("token", member.token or ""),)

    async def _authenticate(self, member: Endpoint) -> None:
        request = pb.AuthenticateRequest(
            name=self.settings.username, password=self.settings.password or ""
        )
        async with self._auth_lock:
            try:
                answer = await member.authenticate(
                    request, timeout=self.settings.read_timeout, wait_for_ready=True
                )
            except grpc.RpcError as exc:
                failure = verdict(exc, member.url, None, retoken=False)
                if isinstance(failure, Unreachable):
                    raise failure from None
                message = f"authentication failed: {status(exc)[1]}"
                raise EtcdAuthError(message, endpoints=(member.url,)) from None
            member.token = answer.token

    def forget_token(self, member: Endpoint) -> None:
        """Drop ``member``'s token: the next request authenticates again."""
        member.token = None

    # -- calls ---------------------------------------------------------------------

    async def call(self, request: v3.Request, key: str | None = None) -> v3.Result:
        """Send ``request`` to the first member that answers; see
        :class:`link.etcd.aio.driver.AsyncTransport`."""
        if type(request) is v3.LeaseKeepAlive:
            return await self.keepalive(request.id)
        kind = type(request)
        to_result = UNARY[kind][3]
        message = message_of(request, self.settings)
        timeout = self.settings.read_timeout

        async def send(member: Endpoint) -> v3.Result:
            method = member.unary[kind]
            answer = await self._with_token(
                member,
                key,
                lambda metadata: method(
                    message, timeout=timeout, metadata=metadata, wait_for_ready=True
                ),
            )
            return to_result(answer)  # type: ignore[no-any-return]

        return await self.failover.attempt_async(send, key)

    async def _with_token(
        self, member: Endpoint, key: str | None, send: Callable[[Any], Awaitable[T]]
    ) -> T:
        """``await send(metadata)`` on ``member``, once more with a new token when etcd
        refused the one it had.

        :raises Unreachable: the member is down, has no leader or did not answer.
        :raises EtcdError: etcd refused the call.
        """
        retoken = bool(self.settings.username)
        while True:
            try:
                result = await send(await self._metadata(member))
            except grpc.RpcError as exc:
                failure = verdict(exc, member.url, key, retoken=retoken)
                if failure is None:
                    retoken = False
                    await self._authenticate(member)
                    continue
                if isinstance(failure, Unreachable):
                    raise await self._diagnosed(member, failure) from None
                raise failure from exc
            member.answered = True
            return result

    async def _diagnosed(self, member: Endpoint, failure: Unreachable) -> Unreachable:
        """``failure``, or, for a member that never answered and timed out, gRPC's last
        connection error (refused, not HTTP/2, …), asked with one call that does
        not wait for the channel (as the sync transport does)."""
        if not failure.timed_out or member.answered:
            return failure
        try:
            await member.unary[v3.Status](pb.StatusRequest(), timeout=0.2)
        except grpc.RpcError as exc:
            return Unreachable(f"could not connect: {status(exc)[1]}", timed_out=True)
        return failure

    async def keepalive(self, lease_id: int) -> v3.LeaseResult:
        """One ``Lease/LeaseKeepAlive`` exchange on a short-lived stream."""
        timeout = self.settings.read_timeout

        async def exchange(member: Endpoint, metadata: Any) -> v3.LeaseResult:
            call = member.keepalive(
                iter([pb.LeaseKeepAliveRequest(ID=lease_id)]),
                timeout=timeout,
                metadata=metadata,
                wait_for_ready=True,
            )
            try:
                async for answer in call:
                    return lease_result(answer)
                raise Unreachable("the keepalive stream ended without an answer")
            finally:
                call.cancel()

        async def send(member: Endpoint) -> v3.LeaseResult:
            return await self._with_token(member, None, lambda metadata: exchange(member, metadata))

        return await self.failover.attempt_async(send)

    # -- watch ---------------------------------------------------------------------

    async def open_watch(
        self, create: v3.WatchCreate, key: str | None = None
    ) -> AsyncGrpcWatchStream:
        """A watch stream on the member :attr:`failover` tries first.

        :raises Unreachable: its channel did not become ready within ``read_timeout``.
        """
        _, member = next(self.failover.order())
        try:
            await asyncio.wait_for(member.channel.channel_ready(), self.settings.read_timeout)
        except TimeoutError:
            raise Unreachable(f"{member.url} did not accept a watch", timed_out=True) from None
        metadata = (*(await self._metadata(member) or ()), REQUIRE_LEADER)
        call = member.watch(metadata=metadata)
        return AsyncGrpcWatchStream(self, member, call, watch_request(create), key)

    async def aclose(self) -> None:
        """Close every channel (their calls end)."""
        for member in self.failover.members:
            await member.channel.close()


class AsyncGrpcWatchStream:
    """One ``Watch/Watch`` stream: ``async for`` :class:`.protocol.WatchResult` s."""

    def __init__(
        self,
        transport: AsyncGrpcTransport,
        member: Endpoint,
        call: Any,
        create: Any,
        key: str | None,
    ) -> None:
        self._transport = transport
        self._member = member
        self._call = call
        self._create = create
        self._key = key
        self._reader: Reader[Any] = Reader(call.read)
        self._idle = transport.watch_idle_seconds
        self._results = self._read()

    def __aiter__(self) -> AsyncIterator[v3.WatchResult]:
        return self._results

    async def _read(self) -> AsyncGenerator[v3.WatchResult, None]:
        try:
            await self._call.write(self._create)
            while True:
                message = await self._reader.get(self._idle)
                if message is TIMED_OUT:  # silent: ask for progress, check the quorum
                    await self._call.write(PROGRESS_REQUEST)
                    if not await self._in_quorum():
                        raise Unreachable(
                            f"{self._member.url} did not answer a quorum read", timed_out=True
                        )
                    message = await self._reader.get(self._transport.settings.read_timeout)
                    if message is TIMED_OUT:
                        raise Unreachable(f"{self._member.url} sent nothing", timed_out=True)
                if message is ENDED or message is grpc.aio.EOF:
                    return
                yield watch_result(message)
        except grpc.RpcError as exc:
            code, details = status(exc)
            if code == v3.CANCELLED:  # by cancel(), or a closed channel
                return
            failure = verdict(exc, self._member.url, self._key, retoken=True)
            if isinstance(failure, Unreachable):
                raise failure from None
            if failure is None:
                self.forget_token()
                failure = v3.error_for(code, details, endpoints=(self._member.url,), key=self._key)
            raise failure from exc
        finally:
            await self._stop()

    async def _in_quorum(self) -> bool:
        """One linearizable read of the watched key on this member (it needs the
        leader and a quorum): False when it fails to answer within ``read_timeout``."""
        check = pb.RangeRequest(key=self._create.create_request.key, limit=1, keys_only=True)
        method = self._member.unary[v3.Range]
        timeout = self._transport.settings.read_timeout
        try:
            await self._transport._with_token(
                self._member,
                self._key,
                lambda metadata: method(check, timeout=timeout, metadata=metadata),
            )
        except Unreachable:
            return False
        except EtcdError:
            pass  # refused, e.g. for permissions: the member answered
        return True

    async def _stop(self) -> None:
        self._call.cancel()
        await self._reader.aclose()

    def forget_token(self) -> None:
        """The stream was refused for its token: authenticate again next time."""
        self._transport.forget_token(self._member)

    def cancel(self) -> None:
        """End the stream; an iteration waiting on it ends."""
        self._reader.cancel()
        self._call.cancel()

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        if not running(self._results):
            await self._results.aclose()
        await self._stop()
