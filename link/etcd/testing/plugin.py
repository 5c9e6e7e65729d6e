"""The ``link_etcd`` pytest plugin (``pytest11`` entry point): the ``etcd_server``
and ``etcd_prefix`` fixtures, and the server log attached to failed reports.

``etcd_server`` (session scope)
    A running :class:`~link.etcd.testing.EtcdServer` with the v2 API enabled,
    shared by the whole session.  If ``LINK_ETCD_TEST_ENDPOINT`` is set (e.g.
    ``http://127.0.0.1:2379``), an :class:`~link.etcd.testing.ExternalEtcdServer`
    pointing at that server is yielded instead and nothing is started.
``etcd_prefix`` (function scope)
    A unique key prefix such as ``/test-3f2a9c0b1d4e``; keys under it are not
    deleted afterwards (the server is throwaway).

When a test that uses ``etcd_server`` fails, the last 50 lines of the server
log are attached to the report as an "etcd server log" section.

Disable it with ``pytest -p no:link_etcd``; without the installed entry point,
load it with ``pytest -p link.etcd.testing.plugin``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .server import TEST_ENDPOINT_ENV, EtcdServer, ExternalEtcdServer

__all__ = ["REPORT_LOG_LINES", "etcd_prefix", "etcd_server"]

#: Lines of server log attached to a failed test's report.
REPORT_LOG_LINES = 50


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer | ExternalEtcdServer]:
    """A running etcd for the whole session (v2 enabled), or the external one.

    Set ``LINK_ETCD_TEST_ENDPOINT`` to use an existing server instead.
    Shared by all tests: use :func:`etcd_prefix` for your keys and your
    own :class:`EtcdServer` for anything that changes the server (auth,
    restarts).
    """
    external = os.environ.get(TEST_ENDPOINT_ENV)
    if external:
        yield ExternalEtcdServer(external)
        return
    with EtcdServer(enable_v2=True) as server:
        yield server


@pytest.fixture
def etcd_prefix() -> str:
    """A unique key prefix per test, like ``"/test-3f2a9c0b1d4e"`` (no trailing slash)."""
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attach the etcd server log tail to failed reports of tests using ``etcd_server``."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    server = getattr(item, "funcargs", {}).get("etcd_server")
    if server is None:
        return
    with contextlib.suppress(Exception):
        text = server.log_text(tail=REPORT_LOG_LINES)
        if text:
            report.sections.append(("etcd server log", text))
