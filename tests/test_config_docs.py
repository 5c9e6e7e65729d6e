"""docs/service-config.md: every ``>>>`` example, in order, against a real etcd."""

from pathlib import Path
from typing import Any

import pytest

from .helpers import run_doc_examples

DOCS = Path(__file__).resolve().parent.parent / "docs" / "service-config.md"


def test_docs_examples(
    etcd_server: Any, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On v3 over gRPC: the page is about the adapters, the APIs are tested elsewhere."""
    monkeypatch.delenv("SVC_DEBUG", raising=False)
    run_doc_examples(
        DOCS, monkeypatch, {"endpoints": etcd_server.endpoint, "prefix": etcd_prefix}, at_least=40
    )
