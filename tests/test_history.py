"""client.history(): every version of a subtree still in etcd's history (v3)."""

from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdCompacted, EtcdMiddleware, EtcdUnsupported
from link.etcd.testing import EtcdServer

TRANSPORTS = ["grpc", "gateway"]


@pytest.fixture(params=TRANSPORTS)
def v3t(etcd_server: Any, etcd_prefix: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, transport=request.param
    ) as client:
        yield client


def _changes(client: EtcdMiddleware) -> int:
    """Write a few versions of /cfg (and an unrelated key between them); the
    revision before the first."""
    client["/other"] = 0
    _, before = client.snapshot("/", default=None)
    client["/cfg"] = {"a": 1}
    client["/cfg/b"] = [1, 2]
    client["/other"] = 1  # not below /cfg: no version of its own
    client["/cfg"] = "flat"
    del client["/cfg"]
    client["/cfg"] = {"z": None}
    return before


def test_history_gives_every_version_in_order(v3t: EtcdMiddleware) -> None:
    before = _changes(v3t)
    versions = list(v3t.history("/cfg", start_revision=before + 1))
    assert [value for _, value in versions] == [
        {"a": 1},
        {"a": 1, "b": [1, 2]},
        "flat",
        None,
        {"z": None},
    ]
    revisions = [revision for revision, _ in versions]
    assert revisions == sorted(set(revisions))
    assert revisions[-1] == v3t.snapshot("/cfg")[1]
    # each version is what a read at that revision gives
    for revision, value in versions:
        assert v3t.snapshot("/cfg", default=None, revision=revision)[0] == value


def test_history_from_a_later_revision_starts_from_the_tree_then(v3t: EtcdMiddleware) -> None:
    before = _changes(v3t)
    versions = list(v3t.history("/cfg", start_revision=before + 3))  # after /cfg/b
    assert [value for _, value in versions] == ["flat", None, {"z": None}]


def test_history_of_an_unchanged_path_is_empty(v3t: EtcdMiddleware) -> None:
    v3t["/still"] = 1
    _, now = v3t.snapshot("/still")
    v3t["/elsewhere"] = 2
    assert list(v3t.history("/still", start_revision=now + 1)) == []


def test_history_across_a_compaction() -> None:
    with EtcdServer(enable_v2=False) as server, EtcdMiddleware(endpoints=[server.endpoint]) as c:
        before = _changes(c)
        server.etcdctl("compact", str(before + 2))
        with pytest.raises(EtcdCompacted) as info:
            list(c.history("/cfg", start_revision=before + 1))
        assert info.value.compact_revision == before + 2
        versions = list(c.history("/cfg"))  # from the oldest version kept
        assert versions[0] == (before + 2, {"a": 1, "b": [1, 2]})
        assert [value for _, value in versions[1:]] == ["flat", None, {"z": None}]


def test_history_on_v2_is_unsupported(etcd_server: Any, etcd_prefix: str) -> None:
    client = EtcdMiddleware(endpoints=[etcd_server.endpoint], api="v2", prefix=etcd_prefix)
    with pytest.raises(EtcdUnsupported):
        list(client.history("/cfg"))


def test_history_from_a_compacted_revision_raises_and_reads_name_the_oldest() -> None:
    with EtcdServer(enable_v2=False) as server, EtcdMiddleware(endpoints=[server.endpoint]) as c:
        before = _changes(c)
        server.etcdctl("compact", str(before + 2))
        with pytest.raises(EtcdCompacted) as info:
            list(c.history("/cfg", start_revision=1))
        assert info.value.compact_revision == before + 2
        with pytest.raises(EtcdCompacted) as info:
            c.snapshot("/cfg", revision=before + 1)
        assert info.value.compact_revision == before + 2
        # the oldest kept revision itself: its tree first, then the changes after it
        versions = list(c.history("/cfg", start_revision=before + 2))
        assert versions[0] == (before + 2, {"a": 1, "b": [1, 2]})
