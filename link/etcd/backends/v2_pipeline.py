"""Pipelined HTTP/1.1 writes for the v2 backend.

etcd v2 has no multi-key transaction, so a tree is one request per leaf.  Sent
one at a time through python-etcd, most of each request's time is the client's
own HTTP machinery (urllib3, ``http.client``'s header parser): about 0.4 ms of
CPU per request, which threads cannot spread on a 2-core machine under the GIL.
This module sends the same requests *pipelined*: a window of requests is written
to a kept-alive connection in one go, then their responses are read back in
order, on ``per_host_pool_size`` connections at once.

Go's HTTP server (etcd) handles the requests of one connection one after the
other, in order, so the appends (``POST``) of one list, sent on one connection,
get in-order keys in list order.

Only writes go through here; reads, deletes and watches stay with python-etcd,
whose exceptions this module reuses (``etcd.EtcdError.handle``) for error answers.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import etcd

from ..settings import EtcdSettings

#: Requests and request bytes sent before their answers are read: keeps both
#: directions' socket buffers from filling up (a deadlock otherwise).
WINDOW_REQUESTS = 128
WINDOW_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One v2 keys request: ``PUT`` of a value, or ``POST`` (append) of a value or a
    directory (``value=None``).  ``path`` is already URL-quoted (``/k%20x``);
    ``ttl`` gives the node etcd's TTL (whole seconds, ``None``: none)."""

    method: str
    path: str
    value: str | None
    ttl: int | None = None


class PipelineError(Exception):
    """The connection broke; ``answered`` requests of the batch had their answer."""

    def __init__(self, message: str, answered: int) -> None:
        super().__init__(message)
        self.answered = answered


class Pipeline:
    """Sends batches of v2 key writes pipelined over kept-alive connections.

    :param settings: endpoints (``urls``), TLS files, credentials, ``read_timeout``
        (seconds, per socket operation) and ``version_prefix``.
    """

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.endpoints = tuple(settings.urls)
        self._current = 0
        self._context = _ssl_context(settings) if self.endpoints[0].startswith("https") else None
        self._headers = _headers(settings)
        self._lock = threading.Lock()

    def prefer(self, endpoint: str) -> None:
        """Connect to ``endpoint`` first from now on, when it is one of ours: the
        member python-etcd last reached, so that a member that accepts connections
        but never answers is not picked again."""
        if endpoint in self.endpoints:
            self._current = self.endpoints.index(endpoint)

    def run(self, batches: Sequence[Sequence[Request]]) -> list[list[str | None]]:
        """Send each batch on its own connection, all batches at once (threads), the
        requests of a batch in order; return, per batch and request, the key a
        directory append created (``None`` for other requests, whose answers are
        only checked for errors, not decoded).

        :raises etcd.EtcdException: the first error answer, as python-etcd raises it.
        :raises PipelineError: a connection broke (or none could be made).
        """
        results: list[list[str | None]] = [[] for _ in batches]
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                results[index] = self._run_one(batches[index])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(1, len(batches))]
        for thread in threads:
            thread.start()
        if batches:
            work(0)
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results

    def _run_one(self, batch: Sequence[Request]) -> list[str | None]:
        answers: list[str | None] = []
        if not batch:
            return answers
        connection, index = self._connect()
        reader = connection.makefile("rb")
        try:
            start = 0
            while start < len(batch):
                stop, payload = self._window(batch, start)
                try:
                    connection.sendall(payload)
                    for index in range(start, stop):
                        answers.append(_read_answer(reader, batch[index].value is None))
                except (OSError, ValueError) as exc:
                    if self._current == index:  # the next attempt starts at the next member
                        self._current = (index + 1) % len(self.endpoints)
                    raise PipelineError(
                        f"connection to {self.endpoints[index]} broke: {exc!r}",
                        answered=len(answers),
                    ) from exc
                start = stop
        finally:
            reader.close()
            connection.close()
        return answers

    def _window(self, batch: Sequence[Request], start: int) -> tuple[int, bytes]:
        prefix = self.settings.version_prefix.rstrip("/") + "/keys"
        chunks: list[bytes] = []
        size = 0
        stop = start
        while stop < len(batch) and stop - start < WINDOW_REQUESTS and size < WINDOW_BYTES:
            request = batch[stop]
            fields = {"dir": "true"} if request.value is None else {"value": request.value}
            if request.ttl is not None:
                fields["ttl"] = str(request.ttl)
            body = urlencode(fields).encode()
            head = (
                f"{request.method} {prefix}{request.path} HTTP/1.1\r\n{self._headers}"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            chunks.append(head + body)
            size += len(head) + len(body)
            stop += 1
        return stop, b"".join(chunks)

    def _connect(self) -> tuple[socket.socket, int]:
        """A connection to the first endpoint that accepts one, from the last good
        one, and that endpoint's index."""
        count = len(self.endpoints)
        last: Exception | None = None
        for step in range(count):
            index = (self._current + step) % count
            parts = urlsplit(self.endpoints[index])
            try:
                sock = socket.create_connection(
                    (parts.hostname, parts.port or self.settings.port),
                    timeout=self.settings.read_timeout,
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._context is not None:
                    sock = self._context.wrap_socket(sock, server_hostname=parts.hostname)
            except OSError as exc:
                last = exc
                continue
            self._current = index
            return sock, index
        raise PipelineError(f"no endpoint accepted a connection: {last!r}", answered=0)


def _headers(settings: EtcdSettings) -> str:
    host = urlsplit(settings.urls[0]).netloc
    lines = [f"Host: {host}", "Content-Type: application/x-www-form-urlencoded"]
    if settings.username and settings.password:
        token = base64.b64encode(f"{settings.username}:{settings.password}".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    return "".join(line + "\r\n" for line in lines)


def _ssl_context(settings: EtcdSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_cert)
    if settings.cert:
        context.load_cert_chain(settings.cert, settings.cert_key)
    return context


def _read_answer(reader: Any, created_key: bool) -> str | None:
    """Read one HTTP/1.1 response (Content-Length or chunked body).

    :param created_key: decode the JSON body and return ``node.key`` (the key a
        directory append created); otherwise the body is only read.
    :raises etcd.EtcdException: (python-etcd's class for the errorCode) on an
        error status.
    :raises ValueError: a malformed or truncated response.
    """
    status_line = reader.readline()
    if not status_line:
        raise ValueError("connection closed before the answer")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    while True:
        line = reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ValueError("connection closed in the headers")
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = _read_chunked(reader) if chunked else reader.read(length or 0)
    if length is not None and not chunked and len(body) != length:
        raise ValueError("connection closed in the body")
    if status >= 300:
        payload = json.loads(body) if body else {}
        payload["status"] = status
        etcd.EtcdError.handle(payload)
    if not created_key:
        return None
    return str(json.loads(body)["node"]["key"])


def _read_chunked(reader: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(reader.readline().split(b";", 1)[0], 16)
        if size == 0:
            reader.readline()  # the empty line after the last chunk (no trailers sent)
            return b"".join(parts)
        parts.append(reader.read(size))
        reader.readline()
