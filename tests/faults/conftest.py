"""Fixtures of the fault suite: real clusters whose members are killed, restarted
or cut off.  Every wait is bounded; the figures measured are printed (run with
``-s`` to see them)."""

from collections.abc import Iterator

import pytest

from link.etcd.testing import EtcdCluster

from .netns import NetnsCluster, unavailable


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    """A 3-member loopback cluster (v2 enabled) for the tests of one module."""
    with EtcdCluster(3) as started:
        yield started


@pytest.fixture(scope="module")
def netns_cluster() -> Iterator[NetnsCluster]:
    """A 3-member cluster, each member in its own network namespace (skipped
    where namespaces cannot be made: not root, no ``ip``)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = NetnsCluster(3)
    with cluster:  # EtcdCluster.__enter__ is typed to return an EtcdCluster
        cluster.wait_for_leader()
        yield cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
