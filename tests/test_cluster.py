"""A real 3-member cluster, TLS and authentication: what production looks like."""

import os
import queue
import signal
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
    EtcdMiddleware,
    EtcdPermissionDenied,
)
from link.etcd.testing import EtcdCluster, EtcdServer

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
    seen: queue.Queue[Any] = queue.Queue()
    client[f"/hang-{api}"] = {"v": 0}
    with client.watch_tree(f"/hang-{api}", lambda value, revision: seen.put(value)):
        assert seen.get(timeout=10) == {"v": 0}
        watched = _member_in_use(cluster, client)
        os.kill(watched.pid, signal.SIGSTOP)  # hung: accepts connections, never answers
        try:
            others = [e for e in cluster.endpoints if e != watched.endpoint]
            writer = EtcdMiddleware(endpoints=others, **connection(api))
            writer[f"/hang-{api}/v"] = 1
            value = seen.get(timeout=30)
            while value != {"v": 1}:
                value = seen.get(timeout=30)
        finally:
            os.kill(watched.pid, signal.SIGCONT)


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
        assert "app-pw" not in text and token not in text


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
        thread = threading.Thread(target=lambda: [events.put(e) for e in stream], daemon=True)
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
