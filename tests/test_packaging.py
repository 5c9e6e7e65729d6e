"""The wheel: the start-up hook, the documented default configuration, and the
metadata the package index shows (one version, PEP 639 license, URLs, classifiers)."""

import email
import email.message
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import link.etcd

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Built:
    """A wheel built from the checkout, and what the build printed."""

    names: frozenset[str]
    metadata: email.message.Message
    log: str

    def all(self, field: str) -> list[str]:
        """Every value of a metadata field (``Classifier``, ``Project-URL`` ...)."""
        return self.metadata.get_all(field) or []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=out, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("link_etcd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = frozenset(archive.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(meta))
    return Built(names, metadata, done.stdout + done.stderr)


def test_wheel_contents(built: Built) -> None:
    names = built.names
    assert "link_etcd_b3j0f.pth" in names  # lazy b3j0f compatibility hook
    assert "_link_etcd_hook.py" in names
    assert any(n.endswith(".data/data/etc/link/etcd/middleware.conf") for n in names)
    assert "link/etcd/py.typed" in names
    assert not any(n.startswith("link/__init__") for n in names)  # PEP 420 namespace
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_one_version_source(built: Built) -> None:
    assert built.metadata["Version"] == link.etcd.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]


def test_license_is_a_pep_639_expression_without_build_warnings(built: Built) -> None:
    assert built.metadata["License-Expression"] == "MIT"
    assert built.all("License-File") == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in built.all("Classifier"))
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    lowered = built.log.lower()
    assert "deprecat" not in lowered, built.log  # e.g. the old license = {text = ...} table
    assert "setuptoolswarning" not in lowered, built.log


def test_index_metadata(built: Built) -> None:
    urls = dict(url.partition(", ")[::2] for url in built.all("Project-URL"))
    assert {"Homepage", "Source", "Documentation", "Changelog", "Issues"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = built.all("Classifier")
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert built.metadata["Requires-Python"] == ">=3.11"
    assert built.metadata["Description-Content-Type"] == "text/markdown"
    assert "docs" in built.all("Provides-Extra")


def test_the_changelog_has_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    release = link.etcd.__version__.split(".dev")[0]
    assert f"## [Unreleased]: {release}" in text or f"## [{release}]" in text
