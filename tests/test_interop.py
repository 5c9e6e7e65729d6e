"""Keys written by other tools read as trees, and our keys read well in other tools."""

import json
import urllib.request
from typing import Any

from link.etcd import EtcdMiddleware


def test_etcdctl_writes_middleware_reads(
    etcd_server: Any, etcd_prefix: str, v3: EtcdMiddleware
) -> None:
    etcd_server.etcdctl("put", f"{etcd_prefix}/app/db/host", "localhost")
    etcd_server.etcdctl("put", f"{etcd_prefix}/app/db/port", "5432")
    etcd_server.etcdctl("put", f"{etcd_prefix}/app/debug", "true")
    etcd_server.etcdctl("put", f"{etcd_prefix}/app/motd", "hello, world")
    assert v3["/app"] == {
        "db": {"host": "localhost", "port": 5432},
        "debug": True,
        "motd": "hello, world",
    }


def test_middleware_writes_etcdctl_reads(
    etcd_server: Any, etcd_prefix: str, v3: EtcdMiddleware
) -> None:
    v3["/app"] = {"db": {"host": "localhost", "port": 5432}, "name": "42", "workers": ["a", "b"]}
    out = etcd_server.etcdctl("get", "--prefix", f"{etcd_prefix}/app/").stdout.splitlines()
    pairs = dict(zip(out[::2], out[1::2], strict=True))
    assert pairs == {
        f"{etcd_prefix}/app/db/host": "localhost",
        f"{etcd_prefix}/app/db/port": "5432",
        f"{etcd_prefix}/app/name": '"42"',
        f"{etcd_prefix}/app/workers/00000000000000000000": "a",
        f"{etcd_prefix}/app/workers/00000000000000000001": "b",
    }


def test_directory_wins_over_leaf_at_same_key(
    etcd_server: Any, etcd_prefix: str, v3: EtcdMiddleware
) -> None:
    etcd_server.etcdctl("put", f"{etcd_prefix}/app", "a leaf")
    etcd_server.etcdctl("put", f"{etcd_prefix}/app/x", "1")
    assert v3["/app"] == {"x": 1}
    assert "/app" in v3
    del v3["/app"]
    assert etcd_server.etcdctl("get", "--prefix", f"{etcd_prefix}/app").stdout == ""


def _v2(etcd_server: Any, method: str, key: str, value: str | None = None) -> Any:
    data = None if value is None else f"value={value}".encode()
    request = urllib.request.Request(
        f"{etcd_server.endpoint}/v2/keys{key}", data=data, method=method
    )
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_v2_in_order_keys_from_other_clients_read_as_list(
    etcd_server: Any, etcd_prefix: str
) -> None:
    for item in ("first", "second", "third"):
        _v2(etcd_server, "POST", f"{etcd_prefix}/queue", item)  # etcd's in-order keys
    _v2(etcd_server, "PUT", f"{etcd_prefix}/port", "5432")
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix)
    assert client["/queue"] == ["first", "second", "third"]
    assert client["/port"] == 5432


def test_v2_lists_are_in_order_keys(etcd_server: Any, etcd_prefix: str) -> None:
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix)
    client["/l"] = ["a", "b", "c"]
    listing = _v2(etcd_server, "GET", f"{etcd_prefix}/l?sorted=true")
    nodes = listing["node"]["nodes"]
    assert [n["value"] for n in nodes] == ["a", "b", "c"]
    names = [n["key"].rsplit("/", 1)[1] for n in nodes]
    assert all(len(name) == 20 and name.isdigit() for name in names)
    assert names == sorted(names)


def test_v2_foreign_directories_and_ttl_keys(etcd_server: Any, etcd_prefix: str) -> None:
    # Other clients create empty directories and keys with a TTL: v2 answers them
    # with fields (``dir``, ``expiration``, ``ttl``) that a leaf written here lacks.
    _v2(etcd_server, "PUT", f"{etcd_prefix}/app/empty?dir=true")
    _v2(etcd_server, "PUT", f"{etcd_prefix}/app/session?ttl=600", "token")
    _v2(etcd_server, "PUT", f"{etcd_prefix}/app/db/%255Fport", "5432")  # "_port" as stored here
    _v2(etcd_server, "PUT", f"{etcd_prefix}/app/db/host", "")
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix)
    assert client["/app"] == {"db": {"_port": 5432, "host": ""}, "empty": {}, "session": "token"}
    assert list(client["/app"]) == ["db", "empty", "session"]
    assert client["/app/empty"] == {}
