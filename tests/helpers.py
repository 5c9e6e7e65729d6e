"""Helpers shared by the test modules (no fixtures: those live in conftest.py)."""

import doctest
import os
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware


def same(a: Any, b: Any) -> bool:
    """Equal with the same types throughout (``1 == 1.0 == True`` does not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


def run_doc_examples(
    page: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], at_least: int
) -> None:
    """Run every ``>>>`` example of the Markdown ``page``, in order, against the
    settings given as ``LINK_ETCD_*`` variables (others are cleared); fails with
    doctest's report when an output differs.

    :param at_least: how many examples the page must have (a page whose examples
        were lost would pass silently otherwise).
    """
    for name in list(os.environ):
        if name.startswith("LINK_ETCD_") and name not in (
            "LINK_ETCD_BINARY",
            "LINK_ETCDCTL_BINARY",
        ):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(f"LINK_ETCD_{name.upper()}", value)
    test = doctest.DocTestParser().get_doctest(page.read_text(), {}, page.name, str(page), 0)
    assert len(test.examples) >= at_least
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    try:
        runner.run(test, out=report.append)
    finally:
        client = test.globs.get("client")
        if isinstance(client, EtcdMiddleware):
            client.close()
    assert runner.failures == 0, "".join(report)
