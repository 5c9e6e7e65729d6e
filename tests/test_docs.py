"""Every code example of the documentation runs here, against a real etcd.

Each Markdown page of ``docs/`` and the README is one test. Its fenced blocks run
in order, in one namespace per page:

- a ``python`` block with ``>>>`` lines is a doctest: outputs must match
  (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` on);
- a ``python`` block without is executed; when it defines ``async def main()``,
  ``main()`` is then run in an event loop;
- an ``ini`` block with an ``[ETCD]`` section is read as a ``middleware.conf``
  file (keys and values must be valid settings);
- a block right after ``<!-- example: not run (why) -->`` is only compiled
  (python) or parsed (ini); the shell sessions of docs/cli.md run in
  tests/test_cli.py.

``EtcdMiddleware()`` with no arguments reaches the session's etcd server:
``LINK_ETCD_ENDPOINTS`` names it and ``LINK_ETCD_PREFIX`` is a fresh prefix per
page; ``LINK_ETCD_TRANSPORT`` is ``grpc``, and also ``gateway`` for the pages of
:data:`BOTH_TRANSPORTS`; other ``LINK_ETCD_*`` variables are cleared. Pages run in a temporary
working directory, each in a thread bounded by :data:`PAGE_TIMEOUT`.

The settings table of docs/configuration.md must be what
tools/gen_settings_reference.py writes, and the README's links must work where
the README is shown without the repository (the package index).
"""

from __future__ import annotations

import asyncio
import configparser
import dataclasses
import doctest
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.settings import EtcdSettings, read_conf_file

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
#: seconds one page may take (the slowest waits for a few lease TTLs)
PAGE_TIMEOUT = 120.0
NOT_RUN = "<!-- example: not run"
PYTHON = {"python", "py", "pycon", "python3"}
FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: its language, text, first line number, and
    whether the page marks it as not run."""

    info: str
    body: str
    line: int
    run: bool


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        found.append(
            Block(
                match.group("info").strip().split(" ")[0].lower(),
                match.group("body"),
                text.count("\n", 0, match.start()) + 2,
                not before.startswith(NOT_RUN),
            )
        )
    return found


# -- pure checks of the extraction --------------------------------------------------------------


def test_blocks_are_found_with_their_language_line_and_marker() -> None:
    text = (
        "# t\n\n```python\n>>> 1\n1\n```\n\n<!-- example: not run (no cluster) -->\n"
        "```py\nx = 1\n```\n\n````sh\n```\n````\n"
    )
    found = blocks(text)
    assert [(b.info, b.line, b.run) for b in found] == [
        ("python", 4, True),
        ("py", 10, False),
        ("sh", 14, True),
    ]
    assert found[0].body == ">>> 1\n1\n"
    assert found[2].body == "```\n"


def test_every_page_with_code_has_python_examples_or_none_at_all() -> None:
    """A page whose examples lost their language tag would silently stop running."""
    for page in PAGES:
        for block in blocks(page.read_text(encoding="utf-8")):
            if block.info == "":
                assert ">>>" not in block.body, f"{page.name}:{block.line}: untagged doctest"
                assert "import " not in block.body, f"{page.name}:{block.line}: untagged code"


# -- the pages, against a real etcd -------------------------------------------------------------


def _run_block(page: Path, block: Block, namespace: dict[str, Any], report: list[str]) -> int:
    """Run one block; returns the number of examples it held."""
    where = f"{page.name}:{block.line}"
    if block.info in PYTHON:
        if ">>>" in block.body:
            test = doctest.DocTestParser().get_doctest(
                block.body, {}, where, str(page), block.line - 1
            )
            test.globs = namespace  # shared with the page's other blocks (not a copy)
            if not block.run:
                for example in test.examples:
                    compile(example.source, where, "single")
                return 0
            runner = doctest.DocTestRunner(
                optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            )
            runner.run(test, out=report.append, clear_globs=False)
            assert runner.failures == 0, "".join(report)
            return len(test.examples)
        code = compile(block.body, where, "exec")
        if not block.run:
            return 0
        before = namespace.get("main")
        exec(code, namespace)
        main = namespace.get("main")
        if main is not before and inspect.iscoroutinefunction(main):
            asyncio.run(asyncio.wait_for(main(), PAGE_TIMEOUT))
        return 1
    if block.info == "ini" and "[ETCD]" in block.body:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(block.body, where)
        if block.run:
            path = Path(f"block-{block.line}.conf")
            path.write_text(block.body, encoding="utf-8")
            read_conf_file(path)
            return 1
    return 0


def _close_clients(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, EtcdMiddleware):
            value.close()
        elif type(value).__name__ == "AsyncEtcdMiddleware":
            asyncio.run(value.aclose())


def run_page(page: Path) -> int:
    """Run every block of ``page`` in one namespace; the number of examples run."""
    # a module of its own, so that what inspects the module of a class the examples
    # define (pydantic resolving annotations) finds it
    module = types.ModuleType("__docs__")
    namespace = module.__dict__
    report: list[str] = []
    count = 0
    sys.modules["__docs__"] = module
    try:
        for block in blocks(page.read_text(encoding="utf-8")):
            count += _run_block(page, block, namespace, report)
    finally:
        sys.modules.pop("__docs__", None)
        _close_clients(namespace)
    return count


def _in_thread(page: Path) -> int:
    """:func:`run_page` in a thread bounded by :data:`PAGE_TIMEOUT` (a watch waiting
    for an event that never comes fails the test instead of hanging the suite)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["count"] = run_page(page)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"docs {page.name}", daemon=True)
    thread.start()
    thread.join(PAGE_TIMEOUT)
    assert not thread.is_alive(), f"{page.name}: still running after {PAGE_TIMEOUT} s"
    if "error" in result:
        raise result["error"]
    return int(result["count"])


#: pages of other work whose examples do not run yet: page -> why (not strict: the
#: entry is to be removed once the page runs)
KNOWN_BROKEN: dict[str, str] = {}


#: pages about what both v3 transports do alike, run on each (the others on gRPC)
BOTH_TRANSPORTS = {"primitives.md", "asyncio.md"}


def _page_params() -> list[Any]:
    params = []
    for page in PAGES:
        broken = KNOWN_BROKEN.get(page.name)
        marks = [pytest.mark.xfail(reason=broken, strict=False)] if broken else []
        transports = ("grpc", "gateway") if page.name in BOTH_TRANSPORTS else ("grpc",)
        for transport in transports:
            name = page.name if transport == "grpc" else f"{page.name}-{transport}"
            params.append(pytest.param(page, transport, id=name, marks=marks))
    return params


@pytest.mark.parametrize(("page", "transport"), _page_params())
def test_the_examples_of_the_page_run(
    page: Path,
    transport: str,
    etcd_server: Any,
    etcd_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    text = page.read_text(encoding="utf-8")
    if not any(block.info in PYTHON | {"ini"} for block in blocks(text)):
        pytest.skip(f"{page.name} has no Python or INI example")
    for name in list(os.environ):
        if name.startswith("LINK_ETCD_") and "BINARY" not in name:
            monkeypatch.delenv(name)
    monkeypatch.setenv("LINK_ETCD_ENDPOINTS", etcd_server.endpoint)
    monkeypatch.setenv("LINK_ETCD_PREFIX", etcd_prefix)
    monkeypatch.setenv("LINK_ETCD_TRANSPORT", transport)
    monkeypatch.chdir(tmp_path)
    assert _in_thread(page) > 0


# -- generated and linked text ------------------------------------------------------------------


def test_the_settings_table_is_generated_from_the_settings() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_settings_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_settings_reference", ROOT / "tools" / "gen_settings_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_reads_params_across_lines() -> None:
    doc = """Intro.

    :param a: first ``x``
        continued | here.
    :param b: second.
    :raises ValueError: not a param.
    """
    assert _generator()._params(doc) == {"a": "first `x` continued \\| here.", "b": "second."}


def test_the_generated_table_has_a_row_per_setting() -> None:
    rows = _generator().table().splitlines()
    for field in dataclasses.fields(EtcdSettings):
        (row,) = [row for row in rows if row.startswith(f"| `{field.name}` |")]
        assert f"`LINK_ETCD_{field.name.upper()}`" in row
    assert rows[0] == "<!-- settings-table -->"
    assert rows[-1] == "<!-- /settings-table -->"


def test_the_generator_refuses_a_page_without_markers() -> None:
    with pytest.raises(SystemExit, match="markers are missing"):
        _generator().render("# no table here\n")


def test_the_readme_links_are_absolute() -> None:
    """The package index shows the README without the repository's files."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)", text) + re.findall(r"<img [^>]*src=\"([^\"]+)", text)
    assert links
    relative = [link for link in links if not link.startswith(("https://", "http://", "#"))]
    assert relative == []
