"""Roles scoped to a prefix: what a user granted ``readwrite /app/`` (etcdctl's usual
``role grant-permission --prefix=true r readwrite /app/``) can do, on a real etcd
with authentication on, over gRPC and the JSON gateway.

The role does not cover the key ``/app`` itself, which every write below it used
to delete or compare (the ancestor check that keeps a key from being both a
leaf and a directory).  Writes now leave out the ancestors the role does not
cover and still check the ones it does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.errors import EtcdPermissionDenied
from link.etcd.testing import EtcdServer

ROOT_PASSWORD = "root-pw"  # a throwaway test server
TRANSPORTS = ["grpc", "gateway"]


@pytest.fixture(scope="module")
def server() -> Iterator[EtcdServer]:
    with EtcdServer(enable_v2=False) as etcd:
        for user, role, permission in (
            ("app", "app-rw", "readwrite"),
            ("reader", "app-ro", "read"),
        ):
            etcd.etcdctl(
                "user", "add", user, f"--new-user-password={user}-pw", "--interactive=false"
            )
            etcd.etcdctl("role", "add", role)
            etcd.etcdctl("role", "grant-permission", role, "--prefix=true", permission, "/app/")
            etcd.etcdctl("user", "grant-role", user, role)
        etcd.enable_auth(ROOT_PASSWORD)
        yield etcd


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def connect(server: EtcdServer, transport: str, user: str, **settings: Any) -> EtcdMiddleware:
    password = ROOT_PASSWORD if user == "root" else f"{user}-pw"
    return EtcdMiddleware(
        endpoints=[server.endpoint],
        username=user,
        password=password,
        transport=transport,
        **settings,
    )


@pytest.fixture(autouse=True)
def root(server: EtcdServer, transport: str) -> Iterator[EtcdMiddleware]:
    """A root client; the keyspace is emptied after each test."""
    with connect(server, transport, "root") as client:
        yield client
        client.clear()


@pytest.fixture
def app(server: EtcdServer, transport: str, root: EtcdMiddleware) -> Iterator[EtcdMiddleware]:
    with connect(server, transport, "app") as client:
        yield client


def raw(root: EtcdMiddleware, key: str) -> bytes | None:
    """The bytes stored at exactly ``key`` (read as root), None when absent."""
    items = root.backend.read(key).items  # type: ignore[attr-defined]
    return next((kv.value for kv in items if kv.key == key), None)


def test_writes_below_the_granted_prefix(app: EtcdMiddleware, root: EtcdMiddleware) -> None:
    app["/app/ok"] = 1
    assert app["/app/ok"] == 1
    app["/app/cfg"] = {"db": {"host": "h", "port": 5432}, "tags": ["a", "b"]}
    assert app["/app/cfg"] == {"db": {"host": "h", "port": 5432}, "tags": ["a", "b"]}
    app["/app/cfg"] = {"db": {"host": "h2"}}  # a replace: diff, compares
    assert app["/app/cfg"] == {"db": {"host": "h2"}}
    app["/app/cfg/db/host"] = "h3"  # a leaf deep below
    assert app["/app/cfg/db"] == {"host": "h3"}
    assert "/app/cfg/db" in app
    assert "/app/none" not in app
    assert app.children("/app/cfg") == ["db"]
    del app["/app/ok"]
    assert "/app/ok" not in app
    with pytest.raises(KeyError):
        del app["/app/ok"]
    assert root["/app"] == {"cfg": {"db": {"host": "h3"}}}


def test_a_write_learns_what_the_role_does_not_cover(app: EtcdMiddleware) -> None:
    """The first write below /app finds /app refused; the client remembers it, and
    later writes send one request (a refused write txn costs etcd a raft round)."""
    app["/app/first"] = 1
    assert app.backend.uncovered == {"/app"}  # type: ignore[attr-defined]
    transport = app.backend.transport  # type: ignore[attr-defined]
    sent: list[Any] = []
    call = transport.call

    def recording(request: Any, key: Any = None) -> Any:
        sent.append(request)
        return call(request, key)

    transport.call = recording
    app["/app/second"] = 2
    assert len(sent) == 1
    assert app["/app/second"] == 2


def test_ancestors_inside_the_grant_are_still_checked(
    app: EtcdMiddleware, root: EtcdMiddleware
) -> None:
    app["/app/a"] = "leaf"
    app["/app/a/b"] = 1  # the leaf at /app/a is inside the grant: deleted
    assert raw(root, "/app/a") is None
    assert app["/app/a"] == {"b": 1}
    app["/app/t"] = "leaf"
    app["/app/t/u"] = {"v": 1}  # a tree write reads and deletes it the same way
    assert raw(root, "/app/t") is None
    assert app["/app/t"] == {"u": {"v": 1}}


def test_an_ancestor_outside_the_grant_is_left_and_the_directory_wins(
    app: EtcdMiddleware, root: EtcdMiddleware
) -> None:
    root["/app"] = "a leaf only root can touch"
    app["/app/x"] = 1  # /app stays: the role may not delete it
    assert raw(root, "/app") is not None
    assert root["/app"] == {"x": 1}  # the directory wins
    assert app["/app/x"] == 1


def test_the_granted_directory_itself(app: EtcdMiddleware) -> None:
    """The role covers what is below /app, not the key /app: reads, exists, children
    and deletes of '/app' work on the range below it."""
    app.update({"/app/a": 1, "/app/b": {"c": 2}})
    assert app["/app"] == {"a": 1, "b": {"c": 2}}
    assert "/app" in app
    assert app.children("/app") == ["a", "b"]
    app["/app"] = {"a": 3}  # a tree write at the granted directory
    assert app["/app"] == {"a": 3}
    del app["/app"]
    assert "/app/a" not in app
    with pytest.raises(EtcdPermissionDenied):  # nothing below: cannot tell what /app holds
        app["/app"]


def test_primitives_below_the_grant(app: EtcdMiddleware) -> None:
    assert app.create("/app/c", {"owner": "me"}) is True
    assert app.create("/app/c", {"owner": "you"}) is False
    assert app.compare_and_swap("/app/c", {"owner": "me"}, {"owner": "you"}) is True
    assert app.transform("/app/n", lambda n: n + 1, default=0) == 1
    item = app.append("/app/list", "x")
    assert app[item] == "x"
    app.update({"/app/u1": 1, "/app/u2": [2]})
    assert (app["/app/u1"], app["/app/u2"]) == (1, [2])
    assert app.pop("/app/u1") == 1
    app.set("/app/leased", {"v": 1}, ttl=30)
    assert app["/app/leased"] == {"v": 1}


def test_a_client_prefix_at_the_granted_directory(
    server: EtcdServer, transport: str, root: EtcdMiddleware
) -> None:
    with connect(server, transport, "app", prefix="/app") as client:
        client["/ok"] = {"v": 1}
        assert client["/ok"] == {"v": 1}
        assert client["/"] == {"ok": {"v": 1}}
        assert list(client) == ["/ok"]
        del client["/ok"]
        assert "/ok" not in client
    assert "/app/ok" not in root


def test_writes_of_several_txns_below_the_grant(server: EtcdServer, transport: str) -> None:
    """More changes than one txn holds: batches, then the verifying read."""
    tree = {f"k{i:02d}": {"v": i} for i in range(30)}
    with connect(server, transport, "app", max_txn_ops=8) as client:
        client["/app/big"] = tree
        assert client["/app/big"] == tree
        client["/app"] = tree  # at the granted directory itself
        assert client["/app"] == tree


def test_outside_the_grant_is_still_denied(app: EtcdMiddleware) -> None:
    for write in (
        lambda: app.__setitem__("/other", 1),
        lambda: app.__setitem__("/other/deep/key", {"a": 1}),
        lambda: app.__delitem__("/other"),
        lambda: app.create("/other", 1),
        lambda: app["/other"],
    ):
        with pytest.raises(EtcdPermissionDenied):
            write()


def test_a_read_only_role_reads_and_is_refused_writes(
    server: EtcdServer, transport: str, root: EtcdMiddleware
) -> None:
    root["/app/r"] = {"a": [1, 2]}
    with connect(server, transport, "reader") as reader:
        assert reader["/app/r"] == {"a": [1, 2]}
        assert reader["/app"] == {"r": {"a": [1, 2]}}
        for write in (
            lambda: reader.__setitem__("/app/r/a", 1),
            lambda: reader.__setitem__("/app/r", {"b": 1}),
            lambda: reader.__delitem__("/app/r"),
            lambda: reader.transform("/app/r", lambda value: {"b": 2}),
        ):
            with pytest.raises(EtcdPermissionDenied):
                write()
    assert root["/app/r"] == {"a": [1, 2]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_below_the_grant(
    server: EtcdServer, transport: str, root: EtcdMiddleware
) -> None:
    from link.etcd.aio import AsyncEtcdMiddleware

    async with AsyncEtcdMiddleware(
        endpoints=[server.endpoint], username="app", password="app-pw", transport=transport
    ) as aclient:
        await aclient.set("/app/ok", {"v": 1})
        assert aclient.uncovered == {"/app"}  # learnt: later writes leave it out at once
        await aclient.set("/app/ok/v", 2)
        assert await aclient.get("/app") == {"ok": {"v": 2}}
        assert await aclient.create("/app/c", 1) is True
        await aclient.delete("/app")
        assert await aclient.contains("/app/ok") is False
        with pytest.raises(EtcdPermissionDenied):
            await aclient.set("/other", 1)
        async with aclient.watch("/app") as events:  # narrowed to the keys below /app

            async def first() -> Any:
                async for event in events:
                    return event
                return None

            reader = asyncio.ensure_future(first())
            for _ in range(50):  # until the stream is open and reports: at most 10 s
                await aclient.set("/app/w", 1)
                done, _ = await asyncio.wait({reader}, timeout=0.2)
                if done:
                    break
            else:
                reader.cancel()
                pytest.fail("the async watch on /app reported nothing")
        event = reader.result()
        assert event is not None
        assert event.path.startswith("/app/"), event
    # grpc.aio delivers the completions of the calls a channel close cancelled a little
    # later, through its process-wide poller; let them reach this loop before it
    # closes, or the next test's loop gets them ("Event loop is closed")
    await asyncio.sleep(0.2)


def test_a_watch_on_the_granted_directory_reports_the_changes_below(
    app: EtcdMiddleware, root: EtcdMiddleware
) -> None:
    """etcd refuses a watch on the range of ``/app`` (its own key, and siblings such as
    ``/app-x``) to a role granted ``/app/`` only; the watch narrows to the keys below
    ``/app`` and reports their changes (sync and async share this logic)."""
    watch = app.watch("/app")
    seen: list[tuple[str, str]] = []
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            for event in watch:
                seen.append((event.path, event.type))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while not seen and not failed and time.monotonic() < deadline:
            app["/app/ping"] = 1  # until the (narrowed) stream is open
            time.sleep(0.2)
        root["/app-x"] = "a sibling: not below /app"
        app["/app/cfg"] = {"a": 1}
        while ("/app/cfg/a", "PUT") not in seen and not failed and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.cancel()
        reader.join(5)
    assert not failed, failed
    assert ("/app/cfg/a", "PUT") in seen
    assert all(path.startswith("/app/") for path, _ in seen), seen
    del root["/app-x"]
