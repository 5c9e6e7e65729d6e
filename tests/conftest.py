"""Fixtures: a middleware per test on a unique prefix, for each API (v3, v2); the
``unit`` and ``integration`` markers.

The real etcd server comes from the ``etcd_server`` fixture of link.etcd's own
pytest plugin (``link.etcd.testing.plugin``), one per test session with v2 enabled.

Every test is marked ``integration`` when it needs a real etcd: it uses a
fixture of the plugin (``etcd_server``, ``etcd_prefix``; directly or through a
fixture that does), or its module, or the module of one of its fixtures, starts
servers itself (it holds :class:`~link.etcd.testing.EtcdServer` or
:class:`~link.etcd.testing.EtcdCluster`); every other test is marked ``unit``.
``pytest -m unit`` runs without any etcd binary, and without the plugin
(``-p no:link_etcd``).
"""

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.testing import EtcdCluster, EtcdServer

from .apis import APIS, connection

#: what a module that starts etcd servers itself holds
_STARTS_SERVERS = (EtcdServer, EtcdCluster)
#: the fixtures of the link_etcd plugin
_PLUGIN_FIXTURES = frozenset({"etcd_server", "etcd_prefix"})


def _starts_servers(module: ModuleType | None) -> bool:
    return module is not None and any(
        value is cls for value in vars(module).values() for cls in _STARTS_SERVERS
    )


def _needs_server(item: pytest.Item) -> bool:
    """True when ``item`` uses an etcd server (see the module docstring)."""
    if _PLUGIN_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if _starts_servers(getattr(item, "module", None)):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        for definition in definitions:
            if _starts_servers(sys.modules.get(getattr(definition.func, "__module__", ""))):
                return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every collected test ``integration`` or ``unit``."""
    for item in items:
        item.add_marker(pytest.mark.integration if _needs_server(item) else pytest.mark.unit)


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
