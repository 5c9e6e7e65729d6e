"""Retried operations report what happened, not what the retry saw (v3, real etcd).

The client names two endpoints of one real etcd: first a small TCP proxy (test
code, :class:`AnswerDropper`) that forwards every request to etcd but, once
told to, swallows etcd's answers; then etcd itself.  A call through the proxy
is applied by etcd, its answer never arrives, ``read_timeout`` passes, and the
transport sends the call again to the second endpoint, which sees the first
attempt's effect (a key already deleted, mod revisions already changed).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.backends.v3.protocol import DeleteRange, Put, Txn

TRANSPORTS = ["grpc", "gateway"]
READ_TIMEOUT = 1.0


class AnswerDropper:
    """A TCP proxy to ``127.0.0.1:port``: requests always pass; etcd's answers pass
    until :attr:`dropping` is set, then they are read and thrown away (counted in
    :attr:`dropped`), as if the member died right after applying the request."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.dropping = threading.Event()
        self.dropped = 0
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(self._target, timeout=5)
            upstream.settimeout(None)
            client.settimeout(None)
            self._sockets += [client, upstream]
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self.dropping.is_set():
                    self.dropped += len(data)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def dropper(etcd_server: Any) -> Iterator[AnswerDropper]:
    if not hasattr(etcd_server, "port"):
        pytest.skip("needs the harness's own etcd (its port)")
    proxy = AnswerDropper(etcd_server.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(params=TRANSPORTS)
def pair(
    request: pytest.FixtureRequest, dropper: AnswerDropper, etcd_server: Any, etcd_prefix: str
) -> Iterator[tuple[EtcdMiddleware, AnswerDropper]]:
    """A client whose first endpoint is the proxy, its second etcd itself."""
    client = EtcdMiddleware(
        endpoints=[dropper.endpoint, etcd_server.endpoint],
        prefix=etcd_prefix,
        transport=request.param,
        read_timeout=READ_TIMEOUT,
    )
    try:
        yield client, dropper
    finally:
        client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def is_write(request: Any) -> bool:
    return isinstance(request, Txn) and any(
        isinstance(op, (Put, DeleteRange)) for op in request.success
    )


def lose_next_write(client: EtcdMiddleware, dropper: AnswerDropper) -> None:
    """Lose the answer to the next write txn: it goes to the proxy (made the first
    endpoint to try), which forwards it to etcd and drops etcd's answer."""
    assert "/warm" not in client  # connected through the proxy
    transport = client.backend.transport  # type: ignore[attr-defined]
    call = transport.call
    dropper.dropping.clear()
    dropper.dropped = 0

    def lose_once(request: Any, key: str | None = None) -> Any:
        if is_write(request):
            transport.call = call  # once
            transport.failover.current = 0
            dropper.dropping.set()
        return call(request, key)

    transport.call = lose_once


def was_retried(client: EtcdMiddleware, dropper: AnswerDropper) -> bool:
    """The write's answer was dropped and it went on to the second endpoint."""
    return dropper.dropped > 0 and client.backend.transport.failover.current == 1  # type: ignore[attr-defined]


def test_del_of_a_key_the_lost_attempt_deleted(pair: tuple[EtcdMiddleware, AnswerDropper]) -> None:
    client, dropper = pair
    client["/leaf"] = "x"
    client["/tree"] = {"a": 1, "b": [2]}
    lose_next_write(client, dropper)
    del client["/leaf"]  # no KeyError: the first attempt deleted it
    assert was_retried(client, dropper)
    assert "/leaf" not in client
    lose_next_write(client, dropper)
    del client["/tree"]
    assert was_retried(client, dropper)
    assert "/tree" not in client
    dropper.dropping.clear()
    with pytest.raises(KeyError):  # nothing there, no retry: still a KeyError
        del client["/leaf"]


def test_pop_of_a_key_the_lost_attempt_deleted(pair: tuple[EtcdMiddleware, AnswerDropper]) -> None:
    client, dropper = pair
    client["/p"] = {"v": 1}
    lose_next_write(client, dropper)
    assert client.pop("/p") == {"v": 1}
    assert was_retried(client, dropper)
    assert "/p" not in client


def test_transform_is_applied_once(pair: tuple[EtcdMiddleware, AnswerDropper]) -> None:
    client, dropper = pair
    client["/n"] = 10
    calls: list[Any] = []

    def add_one(value: int) -> int:
        calls.append(value)
        return value + 1

    lose_next_write(client, dropper)

    assert client.transform("/n", add_one) == 11
    assert was_retried(client, dropper)
    assert calls == [10]  # not called again on the value its own lost write stored
    assert client["/n"] == 11


def test_create_reports_the_write_the_lost_attempt_made(
    pair: tuple[EtcdMiddleware, AnswerDropper],
) -> None:
    client, dropper = pair
    lose_next_write(client, dropper)
    assert client.create("/c", {"owner": "me"}) is True  # it was created, by us
    assert was_retried(client, dropper)
    assert client["/c"] == {"owner": "me"}
    dropper.dropping.clear()
    assert client.create("/c", {"owner": "me"}) is False


def test_compare_and_swap_reports_the_swap_the_lost_attempt_made(
    pair: tuple[EtcdMiddleware, AnswerDropper],
) -> None:
    client, dropper = pair
    client["/s"] = "old"
    lose_next_write(client, dropper)
    assert client.compare_and_swap("/s", "old", "new") is True
    assert was_retried(client, dropper)
    assert client["/s"] == "new"


def test_append_adds_one_item(pair: tuple[EtcdMiddleware, AnswerDropper]) -> None:
    client, dropper = pair
    client["/l"] = ["a"]
    lose_next_write(client, dropper)
    item = client.append("/l", "b")
    assert was_retried(client, dropper)
    assert client["/l"] == ["a", "b"]
    assert client[item] == "b"


def test_tree_write_and_update_are_not_applied_twice(
    pair: tuple[EtcdMiddleware, AnswerDropper],
) -> None:
    client, dropper = pair
    client["/t"] = {"a": 1}
    revision = client.snapshot("/t")[1]
    lose_next_write(client, dropper)
    client["/t"] = {"a": 2, "b": 3}
    assert was_retried(client, dropper)
    assert client["/t"] == {"a": 2, "b": 3}
    # one write: the keys changed once, at one revision after the first read
    mods = {kv.mod_revision for kv in client.backend.read(client.key("/t")).items}  # type: ignore[attr-defined]
    assert len(mods) == 1
    assert mods.pop() > revision
    lose_next_write(client, dropper)
    client.update({"/u1": 1, "/u2": 2})
    assert was_retried(client, dropper)
    assert (client["/u1"], client["/u2"]) == (1, 2)


@pytest.mark.anyio
async def test_async_del_of_a_key_the_lost_attempt_deleted(
    dropper: AnswerDropper, etcd_server: Any, etcd_prefix: str
) -> None:
    async with AsyncEtcdMiddleware(
        endpoints=[dropper.endpoint, etcd_server.endpoint],
        prefix=etcd_prefix,
        read_timeout=READ_TIMEOUT,
    ) as aclient:
        await aclient.set("/leaf", "x")
        assert await aclient.contains("/warm") is False
        transport = aclient.transport
        call = transport.call

        async def lose_once(request: Any, key: str | None = None) -> Any:
            if is_write(request):
                transport.call = call  # type: ignore[method-assign]
                transport.failover.current = 0
                dropper.dropping.set()
            return await call(request, key)

        transport.call = lose_once  # type: ignore[method-assign]
        await aclient.delete("/leaf")  # no KeyError
        assert dropper.dropped > 0
        assert aclient.transport.failover.current == 1
        assert await aclient.contains("/leaf") is False
