"""A real 3-member cluster, TLS and authentication: what production looks like."""

import asyncio
import http.server
import os
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from link.etcd import (
    EtcdAuthError,
    EtcdConnectionFailed,
    EtcdKeyNotFound,
    EtcdMiddleware,
    EtcdPermissionDenied,
)
from link.etcd.aio import AsyncEtcdMiddleware
from link.etcd.testing import EtcdCluster, EtcdServer, set_watch_idle

from .apis import APIS, connection

DOC = {"db": {"host": "h", "port": 5432}, "workers": ["a", "b"]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with EtcdCluster(3, enable_v2=True) as running:
        yield running


@pytest.mark.parametrize("api", APIS)
def test_failover_when_a_member_dies(cluster: EtcdCluster, api: str) -> None:
    client = EtcdMiddleware(endpoints=list(cluster.endpoints), **connection(api), read_timeout=5)
    client[f"/failover-{api}"] = DOC
    first = cluster.members[0]
    first.kill()
    try:
        assert client[f"/failover-{api}"] == DOC
        client[f"/failover-{api}/db/port"] = 6543
        fresh = EtcdMiddleware(endpoints=list(cluster.endpoints), **connection(api), read_timeout=5)
        assert fresh[f"/failover-{api}/db/port"] == 6543
    finally:
        first.start()


def _member_in_use(cluster: EtcdCluster, client: EtcdMiddleware) -> EtcdServer:
    """The member the client's requests (and its watches) go to now."""
    backend: Any = client.backend
    if client.settings.api == "v2":
        url = backend.client.base_uri
    else:
        failover = backend.transport.failover
        url = failover.urls[failover.current]
    return next(member for member in cluster.members if member.endpoint == url)


@pytest.mark.parametrize("api", APIS)
def test_watch_moves_off_a_member_that_hangs(cluster: EtcdCluster, api: str) -> None:
    client = EtcdMiddleware(endpoints=list(cluster.endpoints), **connection(api), read_timeout=1.0)
    set_watch_idle(client, 1.0)  # the member is checked after 1 s of silence, not 10
    seen: queue.Queue[Any] = queue.Queue()
    client[f"/hang-{api}"] = {"v": 0}
    with client.watch_tree(f"/hang-{api}", lambda value, revision: seen.put(value)):
        assert seen.get(timeout=10) == {"v": 0}
        watched = _member_in_use(cluster, client)
        pid = watched.pid
        assert pid is not None, f"{watched.endpoint} is not running"
        os.kill(pid, signal.SIGSTOP)  # hung: accepts connections, never answers
        try:
            others = [e for e in cluster.endpoints if e != watched.endpoint]
            writer = EtcdMiddleware(endpoints=others, **connection(api))
            writer[f"/hang-{api}/v"] = 1
            value = seen.get(timeout=30)
            while value != {"v": 1}:
                value = seen.get(timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdServer, dict[str, str]]]:
    ca = trustme.CA()
    folder: Path = tmp_path_factory.mktemp("tls")
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("link-etcd-client")
    files = {
        "ca": folder / "ca.pem",
        "server": folder / "server.pem",
        "server_key": folder / "server.key",
        "client": folder / "client.pem",
        "client_key": folder / "client.key",
    }
    ca.cert_pem.write_to_path(files["ca"])
    server_cert.cert_chain_pems[0].write_to_path(files["server"])
    server_cert.private_key_pem.write_to_path(files["server_key"])
    client_cert.cert_chain_pems[0].write_to_path(files["client"])
    client_cert.private_key_pem.write_to_path(files["client_key"])
    with EtcdServer(
        enable_v2=True,
        certfile=str(files["server"]),
        keyfile=str(files["server_key"]),
        trusted_ca_file=str(files["ca"]),
        client_cert_auth=True,
        client_certfile=str(files["client"]),
        client_keyfile=str(files["client_key"]),
    ) as server:
        yield server, {k: str(v) for k, v in files.items()}


@pytest.mark.parametrize("api", APIS)
def test_tls_with_client_certificate(tls: tuple[EtcdServer, dict[str, str]], api: str) -> None:
    server, files = tls
    client = EtcdMiddleware(
        endpoints=[server.endpoint],
        **connection(api),
        ca_cert=files["ca"],
        cert=files["client"],
        cert_key=files["client_key"],
    )
    client["/secure"] = DOC
    assert client["/secure"] == DOC


def test_tls_uri(tls: tuple[EtcdServer, dict[str, str]]) -> None:
    server, files = tls
    uri = (
        f"etcds://{server.host}:{server.port}/viauri?ca_cert={files['ca']}"
        f"&cert={files['client']}&cert_key={files['client_key']}"
    )
    client = EtcdMiddleware.from_uri(uri)
    client["/k"] = [1, 2]
    assert client["/k"] == [1, 2]


def test_tls_without_ca_fails_cleanly(tls: tuple[EtcdServer, dict[str, str]]) -> None:
    server, _ = tls
    with pytest.raises(EtcdConnectionFailed) as info:
        EtcdMiddleware(endpoints=[server.endpoint], read_timeout=2)["/secure"]
    assert server.endpoint in str(info.value)


TOKEN_TTL = 2


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EtcdServer]:
    # tokens live 2 s, so that the tests below outlive them
    with EtcdServer(enable_v2=False, extra_args=[f"--auth-token-ttl={TOKEN_TTL}"]) as server:
        server.etcdctl("user", "add", "app", "--new-user-password=app-pw", "--interactive=false")
        server.etcdctl("role", "add", "app-role")
        server.etcdctl(
            "role", "grant-permission", "app-role", "--prefix=true", "readwrite", "/app/"
        )
        server.etcdctl("role", "grant-permission", "app-role", "readwrite", "/app")
        server.etcdctl("user", "grant-role", "app", "app-role")
        server.enable_auth("root-pw")
        yield server


TRANSPORTS = ["grpc", "gateway"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_username_password(auth_server: EtcdServer, transport: str) -> None:
    client = EtcdMiddleware(
        endpoints=[auth_server.endpoint], username="app", password="app-pw", transport=transport
    )
    client["/app"] = DOC
    assert client["/app"] == DOC
    token = client.backend.transport.failover.members[0].token  # type: ignore[attr-defined]
    assert token
    for text in (repr(client), repr(client.backend), repr(client.backend.transport)):  # type: ignore[attr-defined]
        assert "app-pw" not in text
        assert token not in text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_token_obtained_again_when_it_expires(auth_server: EtcdServer, transport: str) -> None:
    client = EtcdMiddleware(
        endpoints=[auth_server.endpoint], username="app", password="app-pw", transport=transport
    )
    client["/app/t"] = 1
    first = client.backend.transport.failover.members[0].token  # type: ignore[attr-defined]
    time.sleep(TOKEN_TTL + 1.5)  # etcd has dropped the token
    client["/app/t"] = 2
    assert client["/app/t"] == 2
    assert client.backend.transport.failover.members[0].token != first  # type: ignore[attr-defined]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_watch_outlives_its_token(auth_server: EtcdServer, transport: str) -> None:
    client = EtcdMiddleware(
        endpoints=[auth_server.endpoint], username="app", password="app-pw", transport=transport
    )
    client["/app/w"] = 0
    seen: queue.Queue[Any] = queue.Queue()
    with client.watch_tree("/app/w", lambda value, revision: seen.put(value)):
        assert seen.get(timeout=10) == 0
        time.sleep(TOKEN_TTL + 1.5)
        client["/app/w"] = 1  # with a new token; the stream was opened with the old one
        assert seen.get(timeout=10) == 1
        # a new stream (as after a reconnect) must authenticate again, too
        client.backend.transport.failover.members[0].token = "expired"  # type: ignore[attr-defined]
        stream = client.watch("/app/w")
        events: queue.Queue[Any] = queue.Queue()

        def pump() -> None:
            for event in stream:
                events.put(event)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            value = 2
            while events.empty():
                assert time.monotonic() < deadline, "the watch never delivered an event"
                client["/app/w"] = value
                value += 1
                time.sleep(0.3)
        finally:
            stream.cancel()
            thread.join(5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_wrong_password(auth_server: EtcdServer, transport: str) -> None:
    client = EtcdMiddleware(
        endpoints=[auth_server.endpoint], username="app", password="nope", transport=transport
    )
    with pytest.raises(EtcdAuthError) as info:
        client["/app"]
    assert "nope" not in str(info.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_permission_denied(auth_server: EtcdServer, transport: str) -> None:
    client = EtcdMiddleware(
        endpoints=[auth_server.endpoint], username="app", password="app-pw", transport=transport
    )
    with pytest.raises(EtcdPermissionDenied):
        client["/other"] = 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_auth_required(auth_server: EtcdServer, transport: str) -> None:
    with pytest.raises(EtcdAuthError):
        EtcdMiddleware(endpoints=[auth_server.endpoint], transport=transport)["/app"]


def test_server_restart_is_survived(etcd_server: Any) -> None:
    if not hasattr(etcd_server, "restart"):
        pytest.skip("external server")
    with EtcdServer(enable_v2=False) as server:
        client = EtcdMiddleware(endpoints=[server.endpoint])
        client["/r"] = DOC
        server.restart()
        assert client["/r"] == DOC
        server.kill()
        with pytest.raises(EtcdConnectionFailed):
            client["/r"]
        server.start()
        assert client["/r"] == DOC


# -- failover details (issues 13 and 15) ---------------------------------------------


def test_v2_endpoints_named_localhost_fail_over(cluster: EtcdCluster) -> None:
    """etcd advertises 127.0.0.1; endpoints named localhost used to turn a failover
    into ``ValueError: list.remove(x)`` (after the write was applied)."""
    endpoints = [f"localhost:{member.port}" for member in cluster.members]
    client = EtcdMiddleware(endpoints=endpoints, api="v2", read_timeout=2)
    client["/localhost"] = 1
    first = cluster.members[0]
    first.kill()
    try:
        client["/localhost"] = 2
        assert client["/localhost"] == 2
    finally:
        first.start()


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    """Another HTTP server: a long HTML page for every request."""

    def _page(self) -> None:
        body = b"<html><body>" + b"welcome " * 500 + b"</body></html>"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _page

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("wrong", ["peer port", "html"])
def test_a_wrong_port_is_named_and_failed_over(
    cluster: EtcdCluster, html_server: str, api: str, wrong: str
) -> None:
    member = cluster.members[1]
    bad = member.peer_url if wrong == "peer port" else html_server
    if api == "v3-grpc" and wrong == "peer port":
        pytest.skip("etcd serves its gRPC API on the peer port too: it answers there")
    alone = EtcdMiddleware(endpoints=[bad], **connection(api), read_timeout=1)
    with pytest.raises(EtcdConnectionFailed) as info:
        alone["/wrong"] = 1
    message = str(info.value)
    assert "does not look like an etcd client URL" in message
    assert bad in message
    assert "welcome welcome welcome welcome welcome welcome welcome welcome welcome" not in message
    assert len(message) < 800
    client = EtcdMiddleware(endpoints=[bad, member.endpoint], **connection(api), read_timeout=1)
    client[f"/wrong-{api}"] = {"a": 1}
    assert client[f"/wrong-{api}"] == {"a": 1}


def test_a_refused_connection_says_how_long_it_took() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for api in APIS:
        started = time.monotonic()
        with pytest.raises(EtcdConnectionFailed) as info:
            EtcdMiddleware(endpoints=[f"127.0.0.1:{port}"], **connection(api), read_timeout=5)["/x"]
        elapsed = time.monotonic() - started
        match = re.search(r"in (\d+\.\d) s", str(info.value))
        assert match, str(info.value)
        assert abs(float(match.group(1)) - elapsed) < 0.6, (api, str(info.value), elapsed)


class _LoseAnswers:
    """A TCP proxy in front of one member that passes every request on but, for a
    request starting with one of ``methods``, closes the connection instead of
    passing etcd's answer back: the request reached etcd, its answer was lost.
    One request per connection."""

    def __init__(self, upstream: tuple[str, int], methods: tuple[bytes, ...]) -> None:
        self.upstream = upstream
        self.methods = methods
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lost = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream, timeout=5) as upstream:
            client.settimeout(5)
            request = _read_http(client)
            if not request:
                return
            upstream.sendall(request)
            answer = _read_http(upstream)
            if request.startswith(self.methods):
                self.lost += 1
                return  # applied by etcd; the client never hears of it
            status, _, rest = answer.partition(b"\r\n")  # not reused: one request each
            client.sendall(status + b"\r\nConnection: close\r\n" + rest)

    def close(self) -> None:
        self.listener.close()


def _read_http(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message with a Content-Length body (etcd v2's requests and answers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length:\s*(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_v2_del_and_pop_report_what_a_lost_answer_did(cluster: EtcdCluster) -> None:
    first, second = cluster.members[0], cluster.members[1]
    proxy = _LoseAnswers((first.host, first.port), (b"DELETE",))
    try:
        endpoints = [proxy.endpoint, second.endpoint]
        for round_ in range(4):  # a new client starts at the proxy each time
            EtcdMiddleware(endpoints=endpoints, api="v2")[f"/lost/{round_}"] = {"a": round_}
            del EtcdMiddleware(endpoints=endpoints, api="v2")[f"/lost/{round_}"]
            assert f"/lost/{round_}" not in EtcdMiddleware(endpoints=endpoints, api="v2")
            EtcdMiddleware(endpoints=endpoints, api="v2")[f"/lost/p{round_}"] = round_
            popped = EtcdMiddleware(endpoints=endpoints, api="v2").pop(f"/lost/p{round_}")
            assert popped == round_
        assert proxy.lost >= 8  # (writes of a dict delete first, too)
        client = EtcdMiddleware(endpoints=endpoints, api="v2")
        with pytest.raises(EtcdKeyNotFound):  # nothing there: still a KeyError
            del client["/lost/never"]
    finally:
        proxy.close()


def test_v2_clear_with_the_root_prefix() -> None:
    with EtcdServer(enable_v2=True) as server:
        client = EtcdMiddleware(endpoints=[server.endpoint], api="v2")
        client["/a"] = {"b": 1}
        client["/c"] = [1, 2]
        client.clear()  # used to raise "Root is read only"
        assert list(client) == []
        assert client.children("/") == []


@pytest.mark.parametrize("api", ["v2", "v3-grpc"])
def test_reads_after_writes_through_another_member_are_never_stale(
    cluster: EtcdCluster, api: str
) -> None:
    """Write through one member, read through another at once: linearizable reads
    (v2 ``quorum=true``) see every acknowledged write."""
    writer = EtcdMiddleware(endpoints=[cluster.members[0].endpoint], **connection(api))
    reader = EtcdMiddleware(endpoints=[cluster.members[2].endpoint], **connection(api))
    stale = 0
    for value in range(150):
        writer[f"/fresh-{api}"] = value
        stale += reader[f"/fresh-{api}"] != value
    print(f"\n{api}: {stale} stale reads of 150 write-then-read pairs")
    assert stale == 0


@pytest.mark.parametrize("api", APIS)
def test_serializable_reads_answer_without_a_quorum(cluster: EtcdCluster, api: str) -> None:
    """With two of three members hung, the third has no quorum: a linearizable read
    (the default) fails within the bound, a serializable one answers from its copy."""
    EtcdMiddleware(endpoints=list(cluster.endpoints), **connection(api))[f"/ser-{api}"] = 7
    alone = cluster.members[2]
    exact = EtcdMiddleware(endpoints=[alone.endpoint], **connection(api), read_timeout=2)
    fast = EtcdMiddleware(
        endpoints=[alone.endpoint], **connection(api), read_timeout=2, serializable_reads=True
    )
    assert exact[f"/ser-{api}"] == 7
    assert fast[f"/ser-{api}"] == 7
    with cluster.members[0].paused(), cluster.members[1].paused():
        started = time.monotonic()
        with pytest.raises(EtcdConnectionFailed):
            exact[f"/ser-{api}"]
        elapsed = time.monotonic() - started
        assert elapsed < 2 + 3, elapsed  # read_timeout, and slack for a loaded machine
        assert fast[f"/ser-{api}"] == 7
        if api != "v2":  # the asyncio client too
            assert asyncio.run(_async_read(alone.endpoint, api, f"/ser-{api}")) == 7
    cluster.wait_for_leader()


async def _async_read(endpoint: str, api: str, path: str) -> Any:
    """``path`` read once by an asyncio client with serializable reads."""
    async with AsyncEtcdMiddleware(
        endpoints=[endpoint], **connection(api), read_timeout=2, serializable_reads=True
    ) as client:
        return await client.get(path)


def test_v2_conditional_writes_report_what_a_lost_answer_did(cluster: EtcdCluster) -> None:
    """create, compare_and_swap and transform whose first attempt was applied but
    whose answer was lost report success (the retry meets their own write); an
    append is not sent twice: it raises, naming the doubt, and adds one item."""
    first, second = cluster.members[0], cluster.members[1]
    direct = EtcdMiddleware(endpoints=[second.endpoint], api="v2", prefix="/lostcond")
    proxy = _LoseAnswers((first.host, first.port), (b"PUT", b"POST"))
    try:

        def fresh() -> EtcdMiddleware:  # starts at the proxy
            return EtcdMiddleware(
                endpoints=[proxy.endpoint, second.endpoint], api="v2", prefix="/lostcond"
            )

        assert fresh().create("/leaf", 1) is True  # was False: "already exists"
        assert direct["/leaf"] == 1
        assert fresh().create("/tree", {"a": [1, 2]}) is True
        assert direct["/tree"] == {"a": [1, 2]}
        assert fresh().create("/leaf", 2) is False  # really there before: still False
        assert fresh().compare_and_swap("/leaf", 1, 5) is True  # was False
        assert direct["/leaf"] == 5
        calls: list[Any] = []

        def bump(value: Any) -> Any:
            calls.append(value)
            return value + 1

        assert fresh().transform("/leaf", bump) == 6
        assert direct["/leaf"] == 6
        assert calls == [5]  # applied once, fn called once
        direct["/list"] = ["x"]
        with pytest.raises(EtcdConnectionFailed, match="may have been applied"):
            fresh().append("/list", "y")
        assert direct["/list"] == ["x", "y"]  # not twice
        assert proxy.lost >= 5
    finally:
        proxy.close()
