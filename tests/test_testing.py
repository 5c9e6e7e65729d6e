"""Tests of link.etcd.testing: real etcd servers (no mocks), and its pure helpers."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware, testing
from link.etcd.backends.base import WATCH_IDLE_SECONDS
from link.etcd.testing import (
    EtcdCluster,
    EtcdctlError,
    EtcdServer,
    ExternalEtcdServer,
    difference,
    find_etcd_binary,
    request_count,
    request_counts,
    set_watch_idle,
)

from .apis import connection

REPO_ROOT = Path(testing.__file__).resolve().parents[3]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET *url* without proxies; return (status, body) also for HTTP errors."""
    opener = NO_PROXY
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def server() -> Iterator[EtcdServer]:
    with EtcdServer(enable_v2=True) as srv:
        yield srv


# -- find_etcd_binary ------------------------------------------------------


def test_find_binary_default_is_executable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINK_ETCD_BINARY", raising=False)
    monkeypatch.delenv("LINK_ETCDCTL_BINARY", raising=False)
    for name in ("etcd", "etcdctl"):
        path = find_etcd_binary(name)
        assert os.path.basename(path) == name
        assert os.access(path, os.X_OK)


def test_find_binary_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    (tmp_path / "etcdctl").write_text("#!/bin/sh\n")
    monkeypatch.setenv("LINK_ETCD_BINARY", str(fake))
    monkeypatch.delenv("LINK_ETCDCTL_BINARY", raising=False)
    assert find_etcd_binary() == str(fake)
    # etcdctl defaults to the sibling of LINK_ETCD_BINARY ...
    assert find_etcd_binary("etcdctl") == str(tmp_path / "etcdctl")
    # ... unless it has its own variable.
    other = tmp_path / "ctl"
    other.write_text("")
    monkeypatch.setenv("LINK_ETCDCTL_BINARY", str(other))
    assert find_etcd_binary("etcdctl") == str(other)


def test_find_binary_missing_override_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LINK_ETCD_BINARY", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"link\.etcd\[server\]"):
        find_etcd_binary()
    monkeypatch.delenv("LINK_ETCDCTL_BINARY", raising=False)
    with pytest.raises(FileNotFoundError, match="etcd-server"):
        find_etcd_binary("etcdctl")  # sibling of a missing override: no fallback


def test_find_binary_not_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINK_ETCD_BINARY", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install etcd-server"):
        find_etcd_binary("etcd-no-such-program")


# -- one server --------------------------------------------------------------


def test_health_and_v2(server: EtcdServer) -> None:
    assert server.running
    assert server.scheme == "http"
    assert server.endpoint == f"http://127.0.0.1:{server.port}"
    assert server.host == "127.0.0.1"
    assert server.endpoints == (server.endpoint,)
    status, body = http_get(server.endpoint + "/health")
    assert status == 200
    assert json.loads(body)["health"] == "true"
    assert http_get(server.endpoint + "/v2/keys/")[0] == 200
    assert server.endpoint in repr(server)
    assert "running" in repr(server)
    assert '"msg"' in server.log_text(tail=5)  # etcd's JSON log lines
    assert len(server.log_text(tail=3).splitlines()) == 3


def test_etcdctl_put_get(server: EtcdServer) -> None:
    server.etcdctl("put", "/t/a", "1")
    got = server.etcdctl("get", "/t/a", "--print-value-only")
    assert got.stdout.strip() == "1"
    missing = server.etcdctl("get", "/t/missing", check=False, env={"ETCDCTL_WRITE_OUT": "json"})
    assert missing.returncode == 0
    assert '"count"' not in missing.stdout  # empty range
    assert server.etcdctl("put", "/t/b", check=False).returncode != 0  # value from /dev/null
    with pytest.raises(EtcdctlError, match="put command needs"):
        server.etcdctl("put")


def test_restart_keeps_data_and_ports(server: EtcdServer) -> None:
    server.etcdctl("put", "/k", "v")
    before = (server.endpoint, server.data_dir, server.pid)
    server.restart()
    assert (server.endpoint, server.data_dir) == before[:2]
    assert server.pid != before[2]
    assert server.etcdctl("get", "/k", "--print-value-only").stdout.strip() == "v"


def test_kill_then_start(server: EtcdServer) -> None:
    server.etcdctl("put", "/killed", "survives")
    server.kill()
    assert not server.running
    assert "data kept" in repr(server)
    assert server.data_dir
    assert os.path.isdir(server.data_dir)
    healthy, _ = server.health(timeout=0.5)
    assert not healthy
    server.start()
    assert server.etcdctl("get", "/killed", "--print-value-only").stdout.strip() == "survives"
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_external_server_wrapper(server: EtcdServer) -> None:
    ext = ExternalEtcdServer(server.endpoint + "/")
    assert (ext.endpoint, ext.host, ext.port, ext.scheme) == (
        server.endpoint,
        server.host,
        server.port,
        "http",
    )
    ext.etcdctl("put", "/ext", "x")
    assert server.etcdctl("get", "/ext", "--print-value-only").stdout.strip() == "x"
    assert ext.log_text(tail=50) == ""
    with pytest.raises(ValueError, match="scheme, host and port"):
        ExternalEtcdServer("127.0.0.1")


# -- throwaway servers -------------------------------------------------------


def test_v2_off_auth_and_stop_cleans_up() -> None:
    srv = EtcdServer(enable_v2=False)
    assert srv.data_dir is None
    assert not srv.running
    with srv:
        assert http_get(srv.endpoint + "/v2/keys/")[0] == 404
        srv.etcdctl("put", "/a", "1")
        srv.enable_auth("s3cret")
        denied = srv.etcdctl("get", "/a", check=False)
        assert denied.returncode != 0
        assert "user name is empty" in denied.stderr
        ok = srv.etcdctl("--user=root:s3cret", "get", "/a", "--print-value-only")
        assert ok.stdout.strip() == "1"
        assert srv.health()[0]  # /health still answers with auth on
        data_dir = srv.data_dir
        assert data_dir
        assert os.path.isdir(data_dir)
        assert "s3cret" not in repr(srv)
    assert not srv.running
    assert not os.path.exists(data_dir)
    assert srv.data_dir is None
    assert "closed etcd server" in srv.log_text()  # kept in memory after stop
    srv.stop()  # idempotent


def test_bad_tls_arguments() -> None:
    with pytest.raises(ValueError, match="certfile and keyfile go together"):
        EtcdServer(certfile="c.pem")
    with pytest.raises(ValueError, match="TLS options need certfile and keyfile"):
        EtcdServer(trusted_ca_file="ca.pem")
    with pytest.raises(ValueError, match="client_cert_auth needs trusted_ca_file"):
        EtcdServer(certfile="c.pem", keyfile="k.pem", client_cert_auth=True)


def test_bad_flag_raises_with_log_tail() -> None:
    srv = EtcdServer(extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="no-such-flag") as info, srv:
        pass
    assert "not running" in str(info.value)
    assert srv.data_dir is None  # __enter__ cleaned up after the failed start


def test_startup_timeout_raises() -> None:
    srv = EtcdServer(startup_timeout=0.0)
    try:
        with pytest.raises(RuntimeError, match="not healthy after"):
            srv.start()
        assert not srv.running  # a failed start leaves no process behind
        assert srv.log_path
        assert os.path.isfile(srv.log_path)  # ... but keeps its files
    finally:
        srv.stop()
    assert srv.data_dir is None


def test_port_taken_before_first_start_is_retried() -> None:
    srv = EtcdServer()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", srv.port))
    squatter.listen()
    taken = srv.port
    try:
        with srv:
            assert srv.port != taken
            assert srv.health()[0]
    finally:
        squatter.close()


def test_atexit_stops_forgotten_server(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from link.etcd.testing import EtcdServer
        s = EtcdServer().start()
        print(s.pid, s.data_dir, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *sys.path]))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    pid, data_dir = out.stdout.split()
    assert not os.path.exists(data_dir)
    assert (
        not Path(f"/proc/{pid}").exists() or "etcd" not in Path(f"/proc/{pid}/cmdline").read_text()
    )


# -- TLS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("pki")
    paths = {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(d / "key.pem")}
    ca.cert_pem.write_to_path(paths["ca"])
    leaf.cert_chain_pems[0].write_to_path(paths["cert"])
    leaf.private_key_pem.write_to_path(paths["key"])
    return paths


def test_tls_health_with_ca(pki: dict[str, str]) -> None:
    with EtcdServer(certfile=pki["cert"], keyfile=pki["key"], ca_file=pki["ca"]) as srv:
        assert srv.scheme == "https"
        assert srv.endpoint.startswith("https://127.0.0.1:")
        assert not srv.requires_client_cert
        status, body = http_get(
            srv.endpoint + "/health", ssl.create_default_context(cafile=pki["ca"])
        )
        assert status == 200
        assert json.loads(body)["health"] == "true"
        with pytest.raises(urllib.error.URLError):  # default trust store rejects our CA
            http_get(srv.endpoint + "/health", ssl.create_default_context())
        srv.etcdctl("put", "/tls", "yes")
        assert srv.etcdctl("get", "/tls", "--print-value-only").stdout.strip() == "yes"


@pytest.mark.parametrize("client_cert_auth", [True, False])
def test_tls_client_certs(pki: dict[str, str], client_cert_auth: bool) -> None:
    # etcd >= 3.4 demands client certificates as soon as --trusted-ca-file is
    # given, even with --client-cert-auth=false (etcd-io/etcd#11124).
    with EtcdServer(
        certfile=pki["cert"],
        keyfile=pki["key"],
        trusted_ca_file=pki["ca"],
        client_cert_auth=client_cert_auth,
        enable_v2=False,
    ) as srv:
        assert srv.requires_client_cert
        assert srv.status()["version"]
        ctx = ssl.create_default_context(cafile=pki["ca"])
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            http_get(srv.endpoint + "/health", ctx)  # no client certificate
        ctx.load_cert_chain(pki["cert"], pki["key"])
        assert http_get(srv.endpoint + "/health", ctx)[0] == 200
        srv.etcdctl("put", "/mtls", "ok")  # harness passes --cacert/--cert/--key


def test_pause_hangs_the_member_until_resume(server: EtcdServer) -> None:
    with server.paused():
        assert server.running
        healthy, detail = server.health(timeout=0.5)
        assert not healthy
        assert "timed out" in detail.lower()
    assert server.health(timeout=5)[0]
    server.pause()
    server.restart()  # SIGTERM reaches a paused process too
    assert server.health(timeout=5)[0]


def test_pause_refuses_a_server_that_is_not_running() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        EtcdServer().pause()


# -- cluster -------------------------------------------------------------------


def test_cluster_replicates_and_survives_member_loss() -> None:
    with EtcdCluster(3) as cluster:
        assert len(cluster.members) == 3
        assert len(set(cluster.endpoints)) == 3
        assert all(m.health()[0] for m in cluster.members)
        m0, _, m2 = cluster.members
        m0.etcdctl("put", "/c", "1")
        assert m2.etcdctl("get", "/c", "--print-value-only").stdout.strip() == "1"
        listed = cluster.etcdctl("member", "list").stdout
        assert all(m.name in listed for m in cluster.members)

        leader = cluster.leader()
        leader.kill()
        new_leader = cluster.wait_for_leader()
        assert new_leader is not leader
        survivor = next(m for m in cluster.members if m is not leader and m is not new_leader)
        survivor.etcdctl("put", "/c", "2")
        leader.start()
        assert leader.etcdctl("get", "/c", "--print-value-only").stdout.strip() == "2"
        revision = json.loads(m0.etcdctl("get", "/c", "-w", "json").stdout)["header"]["revision"]
        hashes = cluster.hashkv(revision)
        assert set(hashes) == set(cluster.endpoints)
        assert len(set(hashes.values())) == 1
        m0.etcdctl("put", "/c", "3")
        assert m0.hashkv(revision + 1) != hashes[m0.endpoint]
        assert "3/3 running" in repr(cluster)
    assert not any(m.running for m in cluster.members)
    assert all(m.data_dir is None for m in cluster.members)


# -- pytest plugin -------------------------------------------------------------


def run_inner_pytest(tmp_path: Path, source: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    full_env = {k: v for k, v in os.environ.items() if k != "LINK_ETCD_TEST_ENDPOINT"}
    full_env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *sys.path]),
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # load the plugin once, via -p
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "link.etcd.testing.plugin", "-p", "no:cacheprovider",
         "-q", str(tmp_path)],
        capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def test_plugin_entry_point_and_opt_out(tmp_path: Path) -> None:
    """The installed ``link_etcd`` entry point gives the fixtures (no ``-p``);
    ``-p no:link_etcd`` takes them away."""
    (tmp_path / "test_inner.py").write_text("def test_prefix(etcd_prefix):\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}

    def inner(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip

    loaded = inner()
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    opted_out = inner("-p", "no:link_etcd")
    assert opted_out.returncode == 1, opted_out.stdout + opted_out.stderr
    assert "fixture 'etcd_prefix' not found" in opted_out.stdout


def test_plugin_fixtures_and_log_on_failure(tmp_path: Path) -> None:
    result = run_inner_pytest(
        tmp_path,
        """
        import re
        from link.etcd.testing import EtcdServer

        seen = []

        def test_prefix(etcd_server, etcd_prefix):
            assert isinstance(etcd_server, EtcdServer) and etcd_server.running
            assert re.fullmatch(r"/test-[0-9a-f]{12}", etcd_prefix)
            assert etcd_prefix not in seen
            seen.append(etcd_prefix)
            etcd_server.etcdctl("put", etcd_prefix + "/x", "1")

        def test_prefix_again(etcd_server, etcd_prefix):
            assert etcd_prefix not in seen

        def test_fails(etcd_server):
            assert False, "boom"

        def test_fails_without_etcd():
            assert False, "plain"
        """,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 2 passed" in out
    assert out.count("etcd server log") == 1  # only for the test that used etcd_server
    assert '"msg"' in out.split("etcd server log", 1)[1]


def test_plugin_uses_external_endpoint(tmp_path: Path, server: EtcdServer) -> None:
    result = run_inner_pytest(
        tmp_path,
        f"""
        from link.etcd.testing import ExternalEtcdServer

        def test_external(etcd_server):
            assert isinstance(etcd_server, ExternalEtcdServer)
            assert etcd_server.port == {server.port}
            etcd_server.etcdctl("put", "/from-inner", "hi")
        """,
        LINK_ETCD_TEST_ENDPOINT=server.endpoint,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.etcdctl("get", "/from-inner", "--print-value-only").stdout.strip() == "hi"


# -- set_watch_idle (no server: creating the backend sends no request) -----------


@pytest.mark.parametrize("api", ["v3-grpc", "v3-gateway", "v2"])
def test_set_watch_idle_reaches_the_watch_streams(api: str) -> None:
    with EtcdMiddleware(endpoints=["http://127.0.0.1:9"], **connection(api)) as client:
        backend: Any = client.backend
        holder = backend if api == "v2" else backend.transport
        assert holder.watch_idle_seconds == WATCH_IDLE_SECONDS
        assert set_watch_idle(client, 1.5) == WATCH_IDLE_SECONDS
        assert holder.watch_idle_seconds == 1.5
        assert set_watch_idle(client, 2) == 1.5
        with pytest.raises(ValueError, match="positive"):
            set_watch_idle(client, 0)
        assert holder.watch_idle_seconds == 2.0


# -- request counters from /metrics ------------------------------------------------


def test_difference_drops_unchanged_methods() -> None:
    assert difference({"Txn": 5, "Range": 3}, {"Txn": 2, "Range": 3}) == {"Txn": 3}
    assert difference({"PUT": 1}, {}) == {"PUT": 1}
    assert difference(None, {"Txn": 1}) == {}
    assert difference({"Txn": 1}, None) == {}


def test_request_counts_of_a_closed_port_are_none() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert request_counts(f"http://127.0.0.1:{port}", "v3", timeout=2) is None
    assert request_count(f"http://127.0.0.1:{port}", "v2", timeout=2) is None


def test_request_counts_follow_the_requests(server: EtcdServer) -> None:
    before_v3 = request_counts(server.endpoint, "v3")
    before_v2 = request_counts(server.endpoint, "v2")
    server.etcdctl("put", "/metrics-k", "1")
    server.etcdctl("get", "/metrics-k")
    after_v3 = request_counts(server.endpoint, "v3")
    assert difference(after_v3, before_v3) == {"Put": 1, "Range": 1}
    assert request_count(server.endpoint, "v3") == sum((after_v3 or {}).values())
    put = urllib.request.Request(
        server.endpoint + "/v2/keys/metrics-v2",
        data=b"value=x",
        method="PUT",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with NO_PROXY.open(put, timeout=5) as answer:
        assert answer.status == 201
    assert difference(request_counts(server.endpoint, "v2"), before_v2) == {"PUT": 1}
