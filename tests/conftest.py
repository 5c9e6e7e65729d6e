"""Fixtures: a middleware per test on a unique prefix, for each API (v3, v2).

The real etcd server comes from the ``etcd_server`` fixture of link.etcd's own
pytest plugin (``link.etcd.testing``), one per test session with v2 enabled.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from link.etcd import EtcdMiddleware

from .apis import APIS, connection


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(etcd_server: Any, etcd_prefix: str, api: str) -> Iterator[EtcdMiddleware]:
    """An EtcdMiddleware rooted at a fresh prefix, on the API under test."""
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], **connection(api), prefix=etcd_prefix
    ) as mw:
        yield mw


@pytest.fixture
def v3(etcd_server: Any, etcd_prefix: str) -> Iterator[EtcdMiddleware]:
    """A v3 EtcdMiddleware rooted at a fresh prefix."""
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as mw:
        yield mw
