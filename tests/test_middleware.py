"""EtcdMiddleware against a real etcd server, on both APIs (v3 and v2)."""

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from link.etcd import (
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdMiddleware,
    EtcdSettingsError,
    EtcdTimeout,
    codec,
)

from .apis import connection
from .strategies import json_documents

DOC = {
    "db": {"host": "db.example", "port": 5432, "ssl": True, "timeout": 2.5, "password": None},
    "workers": ["a", "b", {"name": "c", "tags": ["x", "y"]}, [], {}],
    "labels": {},
    "numbers_as_text": ["42", "true", "null", '"q"', "[]"],
    "odd names": {"a/b": 1, "": 2, "..": 3, "50%": 4, "00000000000000000001": 5},
}


def test_roundtrip_document(client: EtcdMiddleware) -> None:
    client["/app"] = DOC
    assert client["/app"] == DOC
    assert client["app"] == DOC


def test_leaf_and_subtree_reads(client: EtcdMiddleware) -> None:
    client["/app"] = DOC
    assert client["/app/db/port"] == 5432
    assert client["/app/db"] == DOC["db"]
    assert client["/app/workers"] == DOC["workers"]
    assert client["/app/labels"] == {}


def test_replace_leaves_no_old_key(client: EtcdMiddleware) -> None:
    client["/app"] = DOC
    client["/app"] = {"only": ["this"]}
    assert client["/app"] == {"only": ["this"]}
    client["/app"] = "scalar now"
    assert client["/app"] == "scalar now"
    assert client.children("/app") == []
    client["/app"] = ["a"]
    assert client["/app"] == ["a"]


def test_write_below_a_leaf_replaces_the_leaf(client: EtcdMiddleware) -> None:
    client["/app"] = "leaf"
    client["/app/db/host"] = "h"
    assert client["/app"] == {"db": {"host": "h"}}


def test_shrinking_list(client: EtcdMiddleware) -> None:
    client["/l"] = list(range(12))
    client["/l"] = [0, 1]
    assert client["/l"] == [0, 1]


def test_missing_paths(client: EtcdMiddleware) -> None:
    with pytest.raises(KeyError):
        client["/missing"]
    with pytest.raises(EtcdKeyNotFound):
        del client["/missing"]
    assert "/missing" not in client
    assert client.get("/missing", "dflt") == "dflt"


def test_contains_and_delete(client: EtcdMiddleware) -> None:
    client["/app"] = DOC
    assert "/app" in client
    assert "/app/db" in client
    assert "/app/db/port" in client
    assert "/app/db/po" not in client
    del client["/app/db"]
    assert "/app/db" not in client
    assert client["/app"]["workers"] == DOC["workers"]
    del client["/app"]
    assert "/app" not in client


def test_delete_last_child_leaves_no_empty_directory(client: EtcdMiddleware) -> None:
    client["/a"] = {"b": {"c": 1}}
    del client["/a/b/c"]
    assert "/a" not in client


def test_mapping_protocol(client: EtcdMiddleware) -> None:
    assert len(client) == 0
    client.update({"/x": 1, "/y": {"z": [1, 2]}})
    assert sorted(client) == ["/x", "/y"]
    assert len(client) == 2
    assert dict(client.items()) == {"/x": 1, "/y": {"z": [1, 2]}}
    assert client == {"/x": 1, "/y": {"z": [1, 2]}}
    assert client.setdefault("/x", 5) == 1
    assert client.setdefault("/w", 5) == 5
    assert client.pop("/w") == 5
    assert client.pop("/w", None) is None
    client.set("/s", "v")
    assert client.get("/s") == "v"
    assert client.children("/y") == ["z"]
    client.clear()
    assert len(client) == 0


def test_iteration_yields_usable_paths(client: EtcdMiddleware) -> None:
    client["/cfg"] = {"a/b": 1}
    client.update({"/top%": 2})
    assert {path: client[path] for path in client} == {"/cfg": {"a/b": 1}, "/top%": 2}
    assert [client[f"/cfg/{name}"] for name in client.children("/cfg")] == [1]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/ok", {1: "non-str key"}),
        ("/ok", {"a": {1, 2}}),
        ("/ok", {"a": float("nan")}),
        ("/ok", {"a": [float("inf")]}),
        ("/ok", {"a": object()}),
        ("", 1),
        ("/a//b", 1),
        ("/a/../b", 1),
        ("/a/./b", 1),
        ("/", {"a": 1}),
    ],
)
def test_bad_input_writes_nothing(client: EtcdMiddleware, path: str, value: Any) -> None:
    client["/ok"] = {"before": True}
    with pytest.raises(EtcdInvalidTree):
        client[path] = value
    assert dict(client.items()) == {"/ok": {"before": True}}


def test_bad_input_is_also_a_value_error(client: EtcdMiddleware) -> None:
    with pytest.raises(ValueError, match="'/x/s'"):
        client["/x"] = {"s": {1}}


def test_large_tree_in_several_txns(client: EtcdMiddleware) -> None:
    tree = {f"k{i:04d}": {"n": i, "s": f"v{i}"} for i in range(400)}
    client["/big"] = tree
    assert client["/big"] == tree
    tree2 = {f"k{i:04d}": i for i in range(0, 400, 3)}
    client["/big"] = tree2
    assert client["/big"] == tree2


def test_long_text_leaves_split_by_request_size(v3: EtcdMiddleware) -> None:
    text = "y" * (400 * 1024)
    tree = {f"t{i}": text for i in range(10)}  # 4 MiB in all, more than one request carries
    v3["/texts"] = tree
    assert v3["/texts"] == tree


def test_threads_share_one_instance(client: EtcdMiddleware) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                client[f"/t{n}"] = {"i": i, "l": [n, i]}
                assert client[f"/t{n}"] == {"i": i, "l": [n, i]}
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(client) == [f"/t{n}" for n in range(6)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=json_documents())
def test_random_documents_roundtrip(client: EtcdMiddleware, doc: Any) -> None:
    client["/doc"] = doc
    assert client["/doc"] == doc


def test_unreachable_cluster_names_every_endpoint(api: str) -> None:
    endpoints = ["127.0.0.1:9", "127.0.0.1:10"]
    client = EtcdMiddleware(endpoints=endpoints, **connection(api), read_timeout=2)
    with pytest.raises(EtcdConnectionFailed) as info:
        client["/x"]
    assert not isinstance(info.value, KeyError)
    message = str(info.value)
    for endpoint in endpoints:
        assert endpoint in message
    with pytest.raises(EtcdConnectionFailed):
        client["/x"] = 1
    with pytest.raises(EtcdConnectionFailed):
        "/x" in client  # noqa: B015


def test_repr_hides_password(etcd_server: Any) -> None:
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], username="u", password="s3cret")
    assert "s3cret" not in repr(client)
    assert "s3cret" not in repr(client.settings)


def test_from_uri(etcd_server: Any, etcd_prefix: str) -> None:
    uri = f"etcd://{etcd_server.host}:{etcd_server.port}{etcd_prefix}?api=v2"
    client = EtcdMiddleware.from_uri(uri)
    assert client.settings.api == "v2"
    client["/x"] = {"y": 1}
    plain = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2")  # v2 has its own keyspace
    assert plain[f"{etcd_prefix}/x/y"] == 1


def test_errors_share_one_base() -> None:
    assert issubclass(EtcdKeyNotFound, EtcdError)
    assert issubclass(EtcdKeyNotFound, KeyError)
    assert not issubclass(EtcdConnectionFailed, KeyError)


@pytest.fixture
def silent_endpoints() -> Iterator[list[str]]:
    """Two TCP listeners that accept connections but never answer."""
    listeners = []
    for _ in range(2):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listeners.append(listener)
    try:
        yield [f"127.0.0.1:{s.getsockname()[1]}" for s in listeners]
    finally:
        for listener in listeners:
            listener.close()


def test_silent_cluster_times_out_after_read_timeout_per_endpoint(
    silent_endpoints: list[str], api: str
) -> None:
    client = EtcdMiddleware(endpoints=silent_endpoints, **connection(api), read_timeout=1.0)
    started = time.monotonic()
    # v2: python-etcd's member discovery reports no cause, so no EtcdTimeout there
    with pytest.raises(EtcdTimeout if api.startswith("v3") else EtcdConnectionFailed) as info:
        client["/x"]
    took = time.monotonic() - started
    assert 2 * 1.0 <= took < 2 * 1.0 + 0.5  # each endpoint once, no hidden retries
    assert all(endpoint in str(info.value) for endpoint in silent_endpoints)


def test_a_hung_member_fails_over_to_the_next(
    silent_endpoints: list[str], etcd_server: Any, api: str, etcd_prefix: str
) -> None:
    endpoints = [silent_endpoints[0], etcd_server.endpoint]
    client = EtcdMiddleware(
        endpoints=endpoints, **connection(api), prefix=etcd_prefix, read_timeout=1.0
    )
    client["/app"] = {"port": 5432}  # after one read_timeout on the hung member
    started = time.monotonic()
    for _ in range(3):
        assert client["/app"] == {"port": 5432}
    assert time.monotonic() - started < 1.0  # later requests start at the member that answered


@pytest.fixture
def html_endpoint() -> Iterator[str]:
    """An HTTP server that answers every request with a 200 HTML page, like a
    misconfigured proxy in front of the cluster."""

    class Page(http.server.BaseHTTPRequestHandler):
        def _page(self) -> None:
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _page

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_that_is_not_etcd_is_an_error_naming_the_endpoint(
    html_endpoint: str, api: str
) -> None:
    client = EtcdMiddleware(endpoints=[html_endpoint], **connection(api), read_timeout=2.0)
    # gRPC sees an HTTP/1.1 server as one that does not speak HTTP/2
    expected = "HTTP/2" if api == "v3-grpc" else "etcd v[23]"
    with pytest.raises(EtcdError, match=expected) as info:
        client["/app"]
    assert not isinstance(info.value, KeyError)
    assert html_endpoint in str(info.value)


def test_oversized_value_rejected_on_v2_too(client: EtcdMiddleware) -> None:
    client["/big"] = "old"
    with pytest.raises(EtcdInvalidTree, match="max_request_bytes"):
        client["/big"] = ["x" * (2 * 1024 * 1024)]
    assert client["/big"] == "old"


def test_v2_only_settings_refused_on_v3(etcd_server: Any) -> None:
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], srv_domain="example.org")
    with pytest.raises(EtcdSettingsError, match="srv_domain"):
        client["/x"]


def test_long_lists_keep_their_order(client: EtcdMiddleware) -> None:
    tree = {
        "numbers": list(range(300)),
        "records": [{"i": i, "tags": [f"t{i}", f"u{i}"], "empty": []} for i in range(60)],
        "nested": [[i, [i, {"deep": i}]] for i in range(20)],
    }
    client["/lists"] = tree
    assert client["/lists"] == tree


def test_dicts_read_back_in_key_order(client: EtcdMiddleware) -> None:
    # v2 answers in no particular order; both APIs give a directory in key order.
    names = [f"k{i:03d}" for i in range(120)] + ["_hidden", "Zed", "a/b", "%"]
    client["/order"] = {name: {"v": i} for i, name in enumerate(reversed(names))}
    assert list(client["/order"]) == sorted(names, key=codec.escape_name)


def test_long_text_values(client: EtcdMiddleware) -> None:
    tree = {"a": "x" * 100_000, "l": ["y" * 50_000, "z"], "b": "é" * 30_000}
    client["/text"] = tree  # v2 echoes values back: long answers come chunked
    assert client["/text"] == tree
