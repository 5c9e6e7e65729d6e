"""Sphinx configuration of link.etcd's documentation site (``make docs``).

The pages are Markdown (MyST); the API reference comes from the docstrings
(autodoc); ``make docs`` builds with warnings as errors (``-W``).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's link.etcd, even when not installed


#: The modules setup.py compiles (mypyc), by name.
_COMPILED = ("link.etcd.decoding", "link.etcd.encoding")


class _CompiledFromSource(importlib.abc.MetaPathFinder):
    """Imports the modules of :data:`_COMPILED` from their ``.py`` files even
    where they are compiled: a compiled module has no docstrings to document."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _COMPILED:
            return None
        source = DOCS.parent / (name.replace(".", "/") + ".py")
        return importlib.util.spec_from_file_location(name, source)


sys.meta_path.insert(0, _CompiledFromSource())

from link.etcd import __version__  # noqa: E402

project = "link.etcd"
author = "link.etcd contributors"
copyright = "2016-2026, link.etcd contributors"  # noqa: A001 - Sphinx's name
release = __version__
version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/.pytest_cache"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]
# pages written for GitHub too: a heading level skipped is not worth a failed build
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}

html_theme = "furo"
html_title = f"link.etcd {release}"

#: pages other work adds; the site builds without them and lists them once they exist
OPTIONAL_PAGES = ("coordination", "reliability", "service-config")


def _drop_missing_pages(app: Any, docname: str, source: list[str]) -> None:
    """Tolerate the optional pages not written yet: their toctree entries in the
    index are removed, and links to them elsewhere become their plain text."""
    missing = [name for name in OPTIONAL_PAGES if not (DOCS / f"{name}.md").exists()]
    if not missing:
        return
    text = source[0]
    if docname == "index":
        lines = text.splitlines(keepends=True)
        text = "".join(line for line in lines if line.strip() not in missing)
    names = "|".join(re.escape(name) for name in missing)
    source[0] = re.sub(rf"\[([^\]]*)\]\((?:\.\./)?(?:{names})\.md(?:#[^)]*)?\)", r"\1", text)


def setup(app: Any) -> None:
    app.connect("source-read", _drop_missing_pages)
