"""The asyncio JSON-gateway transport: etcd's v3 API as HTTP/JSON over httpx.

Everything but the waiting is :mod:`link.etcd.backends.v3.gateway`'s: the call
table (:data:`~link.etcd.backends.v3.gateway.CALLS`: path, request to JSON,
msgspec decoder, answer to result), what an answer means
(:func:`~link.etcd.backends.v3.gateway.answer`), the token, the watch request and
lines; :class:`~link.etcd.backends.v3.transport.Failover` picks the member.  One
``httpx.AsyncClient`` per endpoint keeps at most ``per_host_pool_size``
connections (HTTP/1.1: one request each at a time); requests wait for a free
connection without a deadline, then ``read_timeout`` seconds for the answer.
A watch stream that sends nothing for ``WATCH_IDLE_SECONDS`` is given up (the
gateway cannot ask for progress), as the sync transport does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any

import msgspec

from ..backends.base import WATCH_IDLE_SECONDS
from ..backends.v3 import protocol as v3
from ..backends.v3.gateway import (
    CALLS,
    WATCH_HEADERS,
    answer,
    auth_body,
    body_of,
    token,
    watch_body,
    watch_line,
)
from ..backends.v3.transport import Failover, Unreachable
from ..errors import EtcdAuthError, EtcdError
from ..settings import EtcdSettings
from .watch import ENDED, Reader, running

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the asyncio gateway transport needs httpx: pip install 'link.etcd[aio]'"
    ) from exc

# httpcore imports its HTTP/1.1 machinery and anyio's asyncio backend on the first
# request, inside the event loop (about 0.1 s of imports in one step): import them
# with this module instead
import anyio._backends._asyncio  # noqa: F401
import h11  # noqa: F401
import httpcore._async.http11  # noqa: F401


def _verify(settings: EtcdSettings, url: str) -> ssl.SSLContext | bool:
    """What httpx checks the server with: nothing to check on ``http``; else
    ``ca_cert`` (or certifi's bundle, as ``requests`` uses) and the client
    certificate ``cert``/``cert_key``."""
    if not url.startswith("https:"):
        return False
    import certifi

    context = ssl.create_default_context(cafile=settings.ca_cert or certifi.where())
    if settings.cert:
        context.load_cert_chain(settings.cert, settings.cert_key)
    return context


class _Member:
    """One member: its HTTP client, base URL and auth token."""

    def __init__(self, url: str, settings: EtcdSettings) -> None:
        size = settings.per_host_pool_size
        self.url = url
        self.base = url + "/v3"
        self.token: str | None = None
        # requests wait here for one of the pool's connections: httpcore's own
        # queue costs time in the number of waiting requests at every answer
        self.slots = asyncio.Semaphore(size)
        self.client = httpx.AsyncClient(
            verify=_verify(settings, url),
            trust_env=settings.use_proxies,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            timeout=httpx.Timeout(settings.read_timeout, pool=None),
        )


async def _sent(request: Awaitable[httpx.Response]) -> httpx.Response:
    """The response to ``request``; httpx's failures as :class:`Unreachable`."""
    try:
        return await request
    except httpx.TimeoutException as exc:
        raise Unreachable(str(exc) or type(exc).__name__, timed_out=True) from None
    except httpx.TransportError as exc:  # refused, reset, TLS, broken stream
        raise Unreachable(str(exc) or type(exc).__name__) from None


class AsyncGatewayTransport:
    """v3 requests through etcd's JSON gateway, one ``httpx.AsyncClient`` per
    endpoint of ``settings.urls``, for one event loop.  ``read_timeout`` is each
    request's timeout on each member; ``per_host_pool_size`` the connections per
    member; TLS files, credentials and ``use_proxies`` as for
    :class:`~link.etcd.backends.v3.gateway.GatewayTransport`.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints: tuple[str, ...] = tuple(settings.urls)
        self.failover: Failover[_Member] = Failover.of(settings, lambda url: _Member(url, settings))
        self.pending: set[asyncio.Task[Any]] = set()
        #: seconds a watch stream may stay silent before its member is checked
        #: (:data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS` by default; read
        #: when a stream opens; :func:`link.etcd.testing.set_watch_idle` sets it)
        self.watch_idle_seconds = WATCH_IDLE_SECONDS

    def __repr__(self) -> str:
        return f"AsyncGatewayTransport(endpoints={self.endpoints!r})"

    async def call(self, request: v3.Request, key: str | None = None) -> v3.Result:
        """Send ``request`` to the first member that answers; see
        :class:`link.etcd.aio.driver.AsyncTransport`."""
        path, _, decoder, to_result = CALLS[type(request)]
        body = body_of(request, self.settings)

        async def send(member: _Member) -> v3.Result:
            return to_result(decoder.decode(await self._post(member, path, body, key)))  # type: ignore[no-any-return]

        try:
            return await self.failover.attempt_async(send, key)
        except msgspec.DecodeError as exc:  # pragma: no cover - answer() checks the JSON
            raise EtcdError(f"not an etcd v3 answer: {exc}", key=key) from exc

    async def _post(self, member: _Member, path: str, body: str, key: str | None) -> bytes:
        """POST ``body``; the answer's JSON bytes (once more with a new token when etcd
        refused the one it had)."""
        retoken = bool(self.settings.username)
        while True:
            if self.settings.username and member.token is None:
                await self._authenticate(member)
            async with member.slots:
                response = await _sent(member.client.post(member.base + path, content=body))
            content = answer(response, member.url, key, retoken=retoken)
            if content is not None:
                return content
            retoken = False
            member.token = None

    async def _authenticate(self, member: _Member) -> None:
        post = member.client.post(
            member.base + "/auth/authenticate", content=auth_body(self.settings)
        )
        member.token = token(await _sent(post), member.url)
        member.client.headers["Authorization"] = member.token

    def forget_token(self, member: _Member) -> None:
        """Drop ``member``'s token: the next request authenticates again."""
        member.token = None

    async def open_watch(
        self, create: v3.WatchCreate, key: str | None = None
    ) -> AsyncGatewayWatchStream:
        """A ``/v3/watch`` stream on the member :attr:`failover` tries first.

        :raises Unreachable: it did not answer the opening within ``read_timeout``.
        """
        _, member = next(self.failover.order())
        if self.settings.username and member.token is None:
            await self._authenticate(member)
        request = member.client.build_request(
            "POST",
            member.base + "/watch",
            content=watch_body(create),
            headers=WATCH_HEADERS,
            timeout=httpx.Timeout(
                self.settings.read_timeout, read=self.watch_idle_seconds, pool=None
            ),
        )
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                response = await _sent(member.client.send(request, stream=True))
        except TimeoutError:
            raise Unreachable(f"{member.url} did not accept a watch", timed_out=True) from None
        if response.status_code != 200:
            try:
                await response.aread()
                answer(response, member.url, key, retoken=False)
            except EtcdAuthError:
                member.token = None
                raise
            finally:
                await response.aclose()
        return AsyncGatewayWatchStream(self, member, response)

    async def aclose(self) -> None:
        """Close every member's connections."""
        for member in self.failover.members:
            await member.client.aclose()


class AsyncGatewayWatchStream:
    """One ``/v3/watch`` stream: ``async for`` :class:`.protocol.WatchResult` s."""

    def __init__(
        self, transport: AsyncGatewayTransport, member: _Member, response: httpx.Response
    ) -> None:
        self._transport = transport
        self._member = member
        self._response = response
        lines = response.aiter_lines()

        async def next_line() -> str | None:
            return await anext(lines, None)

        self._reader: Reader[str | None] = Reader(next_line)
        self._results = self._read()

    def __aiter__(self) -> AsyncIterator[v3.WatchResult]:
        return self._results

    async def _read(self) -> AsyncGenerator[v3.WatchResult, None]:
        try:
            while True:
                line = await self._reader.get()
                if line is ENDED or line is None:
                    return
                result = watch_line(line) if line else None  # type: ignore[arg-type]
                if result is not None:
                    yield result
        except (httpx.HTTPError, httpx.StreamError, msgspec.DecodeError) as exc:
            raise Unreachable(f"watch stream of {self._member.url} ended: {exc}") from None
        finally:
            await self._stop()

    async def _stop(self) -> None:
        await self._reader.aclose()
        await self._response.aclose()

    def forget_token(self) -> None:
        """The stream was refused for its token: authenticate again next time."""
        self._transport.forget_token(self._member)

    def cancel(self) -> None:
        """End the stream; an iteration waiting on it ends."""
        self._reader.cancel()

    async def aclose(self) -> None:
        """Close the stream and its connection (idempotent)."""
        if not running(self._results):
            await self._results.aclose()
        await self._stop()
