"""``link-etcd`` against real etcd servers: click's runner and ``python -m link.etcd``.

Every test drives the real command (in process through click's ``CliRunner``, or
as a subprocess) against the session's etcd server (or one of its own, for
authentication), and checks what etcd holds afterwards.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner, Result

from link.etcd import EtcdMiddleware
from link.etcd.cli import cli
from link.etcd.cli.trees import stored_leaves
from link.etcd.demo import pip_inspect
from link.etcd.testing import EtcdServer

from .apis import APIS, connection
from .helpers import same

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

#: A document whose types only an exact round trip keeps.
TRICKY = {
    "str42": "42",
    "int42": 42,
    "float1": 1.0,
    "int1": 1,
    "negative": -0.5,
    "huge": 10**30,
    "tiny": 1e-300,
    "bool": True,
    "bool_text": "true",
    "null": None,
    "null_text": "null",
    "empty_dict": {},
    "empty_list": [],
    "empty_text": "",
    "unicode": "ünïcødé ✓ 日本",
    "multiline": "a\nb\n",
    "spaces": " x ",
    "date_text": "2024-01-01",
    "yes_text": "yes",
    "sexagesimal_text": "1:20",
    "names": {"a/b": 1, "": 2, ".": 3, "..": 4, "50%": 5, "01234567890123456789": 6},
    "nested": [[1, [2, {}]], {"x": []}, "00000000000000000001"],
}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine: no LINK_ETCD_* variable, no middleware.conf."""
    for name in list(os.environ):
        if name.startswith("LINK_ETCD_") and name not in (
            "LINK_ETCD_BINARY",
            "LINK_ETCD_TEST_ENDPOINT",
        ):
            monkeypatch.delenv(name)
    for name in ("B3J0F_CONF_DIR", "XDG_CONFIG_DIRS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.chdir(tmp_path)


def invoke(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run ``link-etcd ARGS`` in process."""
    return CliRunner().invoke(cli, list(args), input=input, env=env)


def run(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m link.etcd ARGS`` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "link.etcd", *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def one_line(text: str) -> str:
    """The single line of an error output."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("link-etcd: error: "), text
    return lines[0]


def api_args(api: str) -> list[str]:
    return [arg for name, value in connection(api).items() for arg in (f"--{name}", str(value))]


@pytest.fixture
def conn(etcd_server: Any, etcd_prefix: str, api: str) -> list[str]:
    """Connection options for the API under test, below a fresh prefix."""
    return ["--endpoints", etcd_server.endpoint, "--prefix", etcd_prefix, *api_args(api)]


@pytest.fixture
def v3conn(etcd_server: Any, etcd_prefix: str) -> list[str]:
    return ["--endpoints", etcd_server.endpoint, "--prefix", etcd_prefix]


@pytest.fixture(scope="module")
def real_document() -> Any:
    """`pip inspect`'s JSON: a document nobody here wrote (about 3,000 keys)."""
    return pip_inspect()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keyspace(server: Any) -> tuple[Any, Any]:
    """Everything etcd holds, v3 (with the store revision and each key's mod
    revision, read by etcdctl) and v2 (with modified indexes and X-Etcd-Index)."""
    v3 = json.loads(server.etcdctl("get", "", "--from-key", "-w", "json").stdout)
    with urllib.request.urlopen(f"{server.endpoint}/v2/keys/?recursive=true", timeout=10) as r:
        v2 = (r.headers["X-Etcd-Index"], _sorted(json.loads(r.read())["node"]))
    return (v3["header"]["revision"], v3.get("kvs", [])), v2


def put_raw(server: Any, key: str, value: bytes) -> None:
    """Store bytes as they are at ``key`` (v3 gateway): what another tool may write."""
    put = {
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(value).decode(),
    }
    request = urllib.request.Request(
        f"{server.endpoint}/v3/kv/put", data=json.dumps(put).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    """A v2 node with its children in key order (v2 answers in no particular order)."""
    if "nodes" in node:
        node["nodes"] = sorted((_sorted(child) for child in node["nodes"]), key=lambda n: n["key"])
    return node


# -- dump | load ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("api", APIS)
def test_dump_load_round_trips_a_real_document(
    conn: list[str],
    etcd_server: Any,
    etcd_prefix: str,
    api: str,
    fmt: str,
    real_document: Any,
    tmp_path: Path,
) -> None:
    source = tmp_path / "inspect.json"
    source.write_text(json.dumps(real_document))
    assert invoke(*conn, "load", "/pip", str(source)).exit_code == 0

    dumped = invoke(*conn, "dump", "/pip", "-o", fmt)
    assert dumped.exit_code == 0, dumped.stderr
    loaded = invoke(*conn, "load", "/copy", "-", "-f", fmt, input=dumped.stdout)
    assert loaded.exit_code == 0, loaded.stderr
    leaves = len(stored_leaves(real_document, "/copy"))
    assert loaded.stderr.startswith(f"loaded /copy: {leaves} added, 0 changed, 0 removed")

    again = invoke(*conn, "dump", "/copy", "-o", fmt)
    assert again.stdout.replace("/copy", "/pip") == dumped.stdout
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        assert same(c["/copy"], real_document)
    assert invoke(*conn, "diff", "/copy", str(source)).exit_code == 0


def test_dump_pipes_into_load_between_processes(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str, real_document: Any
) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        client["/pip"] = real_document
        command = [sys.executable, "-m", "link.etcd", *v3conn]
        dump = subprocess.Popen([*command, "dump", "/pip"], stdout=subprocess.PIPE)
        load = subprocess.run(
            [*command, "load", "/copy"],
            stdin=dump.stdout,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dump.stdout is not None
        dump.stdout.close()
        assert dump.wait(60) == 0
        assert load.returncode == 0, load.stderr
        assert load.stderr.startswith("loaded /copy:")  # a one-line summary
        assert same(client["/copy"], real_document)
        # a reader that is gone (`| true`): status 141, as a shell reports SIGPIPE, quietly
        closed = subprocess.Popen(
            [*command, "dump", "/pip"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert closed.stdout is not None
        assert closed.stderr is not None
        closed.stdout.close()  # before dump writes (it reads first)
        assert closed.wait(60) == 141
        assert closed.stderr.read() == b""


@pytest.mark.parametrize("fmt", ["json", "yaml", "toml"])
@pytest.mark.parametrize("api", APIS)
def test_types_survive_dump_and_load(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str, fmt: str, tmp_path: Path
) -> None:
    document = {k: v for k, v in TRICKY.items() if not (fmt == "toml" and v is None)}
    source = tmp_path / "tricky.json"
    source.write_text(json.dumps(document))
    assert invoke(*conn, "load", "/t", str(source)).exit_code == 0
    dump_file = tmp_path / f"dump.{fmt}"
    assert invoke(*conn, "dump", "/t", "-f", str(dump_file)).exit_code == 0
    result = invoke(*conn, "load", "/back", str(dump_file))
    assert result.exit_code == 0, result.stderr
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        assert same(c["/back"], document)
        assert same(c["/t"], document)


# -- get, ls, put, rm -------------------------------------------------------------


@pytest.mark.parametrize("api", ["v3-grpc"])
def test_get_formats(conn: list[str], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"db": {"host": "h", "port": 5432}, "tags": ["x"]}')
    assert invoke(*conn, "load", "/app", "a.json").exit_code == 0

    piped = invoke(*conn, "get", "/app")
    assert piped.stdout == '{"db":{"host":"h","port":5432},"tags":["x"]}\n'
    assert invoke(*conn, "get", "/app", "--pretty").stdout.startswith('{\n  "db": {\n')
    assert invoke(*conn, "get", "/app/db/port").stdout == "5432\n"
    assert invoke(*conn, "get", "/app/db/host").stdout == '"h"\n'
    assert invoke(*conn, "get", "/app/db/host", "--raw").stdout == "h\n"
    assert invoke(*conn, "get", "/app", "-o", "yaml").stdout == (
        "db:\n  host: h\n  port: 5432\ntags:\n- x\n"
    )
    assert invoke(*conn, "get", "/app", "-o", "toml").stdout == (
        'tags = [\n    "x",\n]\n\n[db]\nhost = "h"\nport = 5432\n'
    )
    assert invoke(*conn, "put", "/app/none", "null").exit_code == 0
    refused = invoke(*conn, "get", "/app", "-o", "toml")
    assert refused.exit_code == 2
    assert "TOML has no null" in one_line(refused.stderr)
    assert "/app/none" in refused.stderr
    missing = invoke(*conn, "get", "/nothing")
    assert missing.exit_code == 1
    assert missing.stdout == ""
    assert "nothing stored at '/nothing'" in one_line(missing.stderr)


@pytest.mark.parametrize("api", APIS)
def test_ls(conn: list[str], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        '{"db": {"host": "h", "port": 5432}, "tags": ["x", "y"], "a/b": 1, "e": {}}'
    )
    assert invoke(*conn, "load", "/app", "a.json").exit_code == 0

    assert invoke(*conn, "ls", "/app").stdout.split() == ["a%2Fb", "db", "e", "tags"]
    long = [line.split() for line in invoke(*conn, "ls", "-l", "/app").stdout.splitlines()]
    assert long == [
        ["leaf", "1", "a%2Fb"],
        ["dir", "2", "db"],
        ["dir", "1", "e"],
        ["list", "2", "tags"],
    ]
    recursive = invoke(*conn, "ls", "-r", "/app").stdout.split()
    assert recursive[:3] == ["/app/a%2Fb", "/app/db", "/app/db/host"]
    assert len(recursive) == 8
    assert recursive[-1].startswith("/app/tags/0000")
    for path in recursive:  # every path listed reads back
        assert invoke(*conn, "get", path).exit_code == 0
    assert invoke(*conn, "ls", "/app/db/port").stdout == "port\n"
    assert "app" in invoke(*conn, "ls").stdout.split()
    missing = invoke(*conn, "ls", "/nothing")
    assert missing.exit_code == 1
    assert "nothing stored" in one_line(missing.stderr)


@pytest.mark.parametrize("api", APIS)
def test_put_parses_values_like_stored_leaves(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str
) -> None:
    for value, extra, expected in [
        ("42", [], 42),
        ('"42"', [], "42"),
        ("42", ["--string"], "42"),
        ("-0.5", [], -0.5),
        ("1.0", [], 1.0),
        ("true", [], True),
        ("null", [], None),
        ("[]", [], []),
        ("db1.example", [], "db1.example"),
        ("[1, 2]", [], "[1, 2]"),
    ]:
        result = invoke(*conn, "put", "/v", value, *extra)
        assert result.exit_code == 0, result.stderr
        shown = json.loads(invoke(*conn, "get", "/v").stdout)
        assert same(shown, expected), (value, shown)
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        c["/dir"] = {"a": 1, "b": 2}
        refused = invoke(*conn, "put", "/dir", "3")
        assert refused.exit_code == 2
        assert "is a directory" in one_line(refused.stderr)
        assert c["/dir"] == {"a": 1, "b": 2}
        assert invoke(*conn, "put", "/dir", "3", "--force").exit_code == 0
        assert c["/dir"] == 3


def test_get_at_a_past_revision(v3conn: list[str], etcd_server: Any, etcd_prefix: str) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
        c["/app"] = {"a": 1, "b": [1]}
        first = c.snapshot("/app")[1]
        c["/app"] = {"a": "1"}
        second = c.snapshot("/app")[1]
    old = invoke(*v3conn, "get", "/app", "--rev", str(first))
    assert (old.exit_code, old.stdout) == (0, '{"a":1,"b":[1]}\n')
    assert invoke(*v3conn, "get", "/app", "--rev", str(second)).stdout == '{"a":"1"}\n'
    assert invoke(*v3conn, "get", "/app").stdout == '{"a":"1"}\n'  # now, without --rev
    assert invoke(*v3conn, "get", "/app/a", "--rev", str(first)).stdout == "1\n"
    as_yaml = invoke(*v3conn, "get", "/app", "--rev", str(first), "-o", "yaml")
    assert as_yaml.stdout == "a: 1\nb:\n- 1\n"
    for path, revision in (("/app/b", second), ("/app", first - 1)):  # nothing stored then
        missing = invoke(*v3conn, "get", path, "--rev", str(revision))
        assert missing.exit_code == 1
        assert missing.stdout == ""
        assert f"nothing stored at '{path}' at revision {revision}" in one_line(missing.stderr)
    future = invoke(*v3conn, "get", "/app", "--rev", str(second + 1000))
    assert future.exit_code == 2
    assert "future revision" in one_line(future.stderr)


@pytest.mark.parametrize("api", ["v3-grpc", "v2"])
def test_put_with_ttl_is_deleted_after_it(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str
) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        started = time.monotonic()
        result = invoke(*conn, "put", "/t/lock", "me", "--ttl", "1.5")  # 2 s: rounded up
        assert result.exit_code == 0, result.stderr
        assert invoke(*conn, "put", "/t/stays", "1").exit_code == 0
        assert c["/t"] == {"lock": "me", "stays": 1}
        while "/t/lock" in c:
            assert time.monotonic() - started < 10, "still there 10 s after --ttl 1.5"
            time.sleep(0.1)
        assert time.monotonic() - started > 1.5  # it lived its TTL
        assert c["/t"] == {"stays": 1}


@pytest.mark.parametrize("api", APIS)
def test_rm(conn: list[str], etcd_server: Any, etcd_prefix: str, api: str) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        c["/app"] = {"db": {"port": 1}, "x": 2}
        missing = invoke(*conn, "rm", "/nothing")
        assert missing.exit_code == 1
        assert "nothing stored" in one_line(missing.stderr)
        refused = invoke(*conn, "rm", "/app/db")
        assert refused.exit_code == 2
        assert "rm -r" in one_line(refused.stderr)
        assert c["/app/db"] == {"port": 1}
        assert invoke(*conn, "rm", "/app/x").exit_code == 0
        assert invoke(*conn, "rm", "-r", "/app").exit_code == 0
        assert "/app" not in c
        assert invoke(*conn, "rm", "-r", "/").exit_code == 2


# -- load -------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_load_replaces_or_merges(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str, tmp_path: Path
) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        c["/app"] = {"db": {"host": "h", "port": 1}, "old": True, "list": [1, 2, 3]}
        (tmp_path / "patch.yaml").write_text("db:\n  port: 2\nlist: [9]\nsince: 2024-01-01\n")
        assert invoke(*conn, "load", "--merge", "/app", "patch.yaml").exit_code == 0
        merged = {"db": {"host": "h", "port": 2}, "old": True, "list": [9], "since": "2024-01-01"}
        assert same(c["/app"], merged)  # a YAML date stays the text it was written as
        assert invoke(*conn, "load", "/app", "patch.yaml").exit_code == 0
        assert same(c["/app"], {"db": {"port": 2}, "list": [9], "since": "2024-01-01"})
        same_again = invoke(*conn, "load", "/app", "patch.yaml")
        assert same_again.exit_code == 0
        assert "nothing written" in same_again.stderr


@pytest.mark.parametrize("api", APIS)
def test_dry_run_writes_nothing(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str, tmp_path: Path
) -> None:
    with EtcdMiddleware(
        endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
    ) as c:
        c["/app"] = {"db": {"host": "h", "port": 1}, "old": 1}
        c["/leaf"] = "x"
    (tmp_path / "new.json").write_text('{"db": {"host": "h", "port": 2}, "new": "x"}')
    before = keyspace(etcd_server)
    for extra in ([], ["--merge"]):
        result = invoke(*conn, "load", "--dry-run", *extra, "/app", "new.json")
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "~ /app/db/port: 1 -> 2" in lines
        assert '+ /app/new = "x"' in lines
        assert ("- /app/old = 1" in lines) is not bool(extra)
        assert "nothing written" in result.stderr
    below_a_leaf = invoke(*conn, "load", "--dry-run", "/leaf/below", "new.json")
    assert below_a_leaf.stdout.splitlines()[:2] == ['- /leaf = "x"', '+ /leaf/below/db/host = "h"']
    assert keyspace(etcd_server) == before


BAD_INPUTS = [
    ("a.json", '{"a": 1,}', "not valid JSON"),
    ("a.json", '{"a": 1, "a": 2}', "duplicate key 'a'"),
    ("a.json", '{"a": NaN}', "NaN"),
    ("a.json", "", "not valid JSON"),
    ("a.yaml", "a: 1\na: 2\n", "duplicate key 'a'"),
    ("a.yaml", "a: !!set {x}\n", "set"),
    ("a.yaml", "1: x\n", "dict keys must be str"),
    ("a.yaml", "a: [1\n", "not valid YAML"),
    ("a.toml", "when = 1979-05-27T07:32:00Z\n", "datetime"),
    ("a.txt", "{not json", "not valid JSON"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_INPUTS)
def test_bad_input_is_refused_before_anything_is_written(
    v3conn: list[str], etcd_server: Any, tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    before = keyspace(etcd_server)
    result = invoke(*v3conn, "load", "/app", name)
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert name in line
    assert message in line
    assert keyspace(etcd_server) == before


def test_unreadable_input_and_bad_paths_are_usage_errors(v3conn: list[str], tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'"caf\xe9"')
    (tmp_path / "ok.json").write_text("{}")
    for args, message in [
        (["load", "/app", "missing.json"], "missing.json: cannot read"),
        (["load", "/app", "latin1.json"], "not UTF-8"),
        (["load", "/", "ok.json"], "root"),
        (["load", "/a//b", "ok.json"], "empty segment"),
    ]:
        result = invoke(*v3conn, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in one_line(result.stderr)


# -- the guard of load (v3) --------------------------------------------------------


def interfere(
    monkeypatch: pytest.MonkeyPatch, method: str, change: Callable[[], object], *, after: bool
) -> None:
    """Another writer getting in: call ``change`` once, just after (``after``) or just
    before the next call of ``EtcdMiddleware.<method>`` (load's read is
    ``snapshot``, its write of several txns ``__setitem__``)."""
    original = getattr(EtcdMiddleware, method)
    pending = [change]

    def wrapper(self: EtcdMiddleware, *args: Any, **kwargs: Any) -> Any:
        if not after and pending:
            pending.pop()()
        result = original(self, *args, **kwargs)
        if after and pending:
            pending.pop()()
        return result

    monkeypatch.setattr(EtcdMiddleware, method, wrapper)


def test_load_fails_rather_than_overwrite_a_change_made_after_its_read(
    v3conn: list[str],
    etcd_server: Any,
    etcd_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a.json").write_text('{"a": 10, "b": 2, "c": 3}')
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as other:
        other["/app"] = {"a": 1, "b": 2, "c": 3}
        for change, held in [
            (lambda: other.__setitem__("/app/d", 4), {"a": 1, "b": 2, "c": 3, "d": 4}),
            (lambda: other.__delitem__("/app/b"), {"a": 1, "c": 3, "d": 4}),  # a key load keeps
        ]:
            interfere(monkeypatch, "snapshot", change, after=True)
            result = invoke(*v3conn, "load", "/app", "a.json")
            assert result.exit_code == 1
            line = one_line(result.stderr)
            assert "/app changed after it was read at revision" in line
            assert "nothing was written" in line
            assert other["/app"] == held
        # left alone, the same load is one txn
        result = invoke(*v3conn, "load", "/app", "a.json")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == "loaded /app: 1 added, 1 changed, 1 removed in one txn\n"
        assert other["/app"] == {"a": 10, "b": 2, "c": 3}


def test_a_load_too_large_for_one_txn_is_written_whole(
    v3conn: list[str],
    etcd_server: Any,
    etcd_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = {"LINK_ETCD_MAX_TXN_OPS": "8"}
    tree = {f"k{i:02}": i for i in range(20)}
    negated = {k: -v for k, v in tree.items()}
    (tmp_path / "one.json").write_text(json.dumps({**tree, "k00": -1}))
    (tmp_path / "negated.json").write_text(json.dumps(negated))
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as other:
        other["/big"] = tree
        # one change fits one txn however many keys stay: guarded by the read, atomic
        interfere(monkeypatch, "snapshot", lambda: other.__delitem__("/big/k10"), after=True)
        refused = invoke(*v3conn, "load", "/big", "one.json", env=small)
        assert refused.exit_code == 1
        assert "changed after it was read" in one_line(refused.stderr)
        assert other["/big"] == {k: v for k, v in tree.items() if k != "k10"}
        other["/big"] = tree
        # 20 changes do not fit in one txn of 8; a change after the read is still found
        # (the library's guarded read comes before it refuses the size)
        interfere(monkeypatch, "snapshot", lambda: other.__setitem__("/big/k19", 99), after=True)
        refused = invoke(*v3conn, "load", "/big", "negated.json", env=small)
        assert refused.exit_code == 1
        assert "nothing was written" in one_line(refused.stderr)
        assert other["/big"] == {**tree, "k19": 99}
        # then several txns, not guarded by load's read: a change made just before them
        # is overwritten, and the tree is the whole document (never a mix)
        other["/big"] = tree
        interfere(monkeypatch, "__setitem__", lambda: other.__setitem__("/big/new", 1), after=False)
        result = invoke(*v3conn, "load", "/big", "negated.json", env=small)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == (
            "loaded /big: 0 added, 19 changed, 0 removed in several txns "
            "(too large for one: not atomic, the last writer wins)\n"
        )
        assert other["/big"] == negated


# -- diff -------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_diff_exit_status(conn: list[str], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"port": 1, "old": true, "name": "42"}')
    (tmp_path / "b.yaml").write_text("port: 2\nname: 42\nnew: [x]\n")
    assert invoke(*conn, "load", "/app", "a.json").exit_code == 0

    equal = invoke(*conn, "diff", "/app", "a.json")
    assert (equal.exit_code, equal.stdout, equal.stderr) == (0, "", "")
    different = invoke(*conn, "diff", "/app", "b.yaml")
    assert different.exit_code == 1
    assert different.stdout.splitlines() == [
        '~ /app/name: "42" -> 42',
        '+ /app/new/00000000000000000000 = "x"',
        "- /app/old = true",
        "~ /app/port: 1 -> 2",
    ]
    assert "\x1b[" not in different.stdout
    coloured = invoke(*conn, "diff", "/app", "b.yaml", "--color")
    assert "\x1b[32m+ /app/new" in coloured.stdout
    assert "\x1b[31m- /app/old" in coloured.stdout
    assert invoke(*conn, "diff", "/missing", "a.json").exit_code == 1
    assert invoke(*conn, "diff", "/app", "nothing.json").exit_code == 2
    assert invoke(*conn, "diff", "/app").exit_code == 2


def test_diff_between_revisions(v3conn: list[str], etcd_server: Any, etcd_prefix: str) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        client["/app"] = {"a": 1, "b": [1]}
        first = client.snapshot("/app")[1]
        client["/app/a"] = 2
        second = client.snapshot("/app")[1]
    changed = invoke(*v3conn, "diff", "/app", "--rev", f"{first}..{second}")
    assert (changed.exit_code, changed.stdout) == (1, "~ /app/a: 1 -> 2\n")
    assert invoke(*v3conn, "diff", "/app", "--rev", f"{second}..").exit_code == 0
    assert invoke(*v3conn, "diff", "/app", "--rev", f"{first}").exit_code == 1
    future = invoke(*v3conn, "diff", "/app", "--rev", f"{first}..{second + 1000}")
    assert future.exit_code == 2
    assert "future revision" in one_line(future.stderr)
    assert invoke(*v3conn, "diff", "/app", "--rev", "x..y").exit_code == 2
    v2 = invoke(*v3conn, "--api", "v2", "diff", "/app", "--rev", f"{first}..")
    assert v2.exit_code == 2
    assert "v3" in one_line(v2.stderr)


# -- history, rollback (v3) -----------------------------------------------------------


def test_history_prints_each_version_as_snapshots_read_it(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str
) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
        c["/h"] = {"a": 1}
        start = c.snapshot("/h")[1]
        c["/h/a"] = 2
        c["/other"] = 1  # not below /h: no version
        c["/h/b"] = "x"
        del c["/h"]
        c["/h"] = [1, "2"]
        result = invoke(*v3conn, "history", "/h", "--from", str(start))
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert all(line.keys() == {"revision", "value"} for line in lines)
        revisions = [line["revision"] for line in lines]
        assert revisions[0] == start
        assert revisions == sorted(set(revisions))
        expected = [{"a": 1}, {"a": 2}, {"a": 2, "b": "x"}, None, [1, "2"]]
        assert len(lines) == len(expected)
        for line, value in zip(lines, expected, strict=True):
            assert same(line["value"], value), lines
            assert same(c.snapshot("/h", None, revision=line["revision"])[0], value)
    # without --from: from the oldest version kept (nothing was at /h before start)
    assert invoke(*v3conn, "history", "/h").stdout == result.stdout
    later = invoke(*v3conn, "history", "/h", "--from", str(revisions[2]))
    assert later.stdout.splitlines() == result.stdout.splitlines()[2:]


def test_history_encodes_values_as_get_and_watch_do(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str
) -> None:
    put_raw(etcd_server, f"{etcd_prefix}/bin/raw", b"\xff\xfe")
    leaf = invoke(*v3conn, "history", "/bin/raw")
    assert leaf.exit_code == 0, leaf.stderr
    (line,) = [json.loads(text) for text in leaf.stdout.splitlines()]
    assert line["value"] is None
    assert base64.b64decode(line["value_base64"]) == b"\xff\xfe"
    tree = invoke(*v3conn, "history", "/bin")  # JSON cannot hold the tree: as get refuses it
    assert tree.exit_code == 2
    assert tree.stdout == ""
    message = one_line(tree.stderr)
    assert "/bin/raw is not UTF-8 text" in message
    assert f"get /bin --rev {line['revision']} -o yaml" in message


def test_rollback_restores_and_dry_run_writes_nothing(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str
) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
        c["/app"] = {"db": {"port": 1}, "list": [1, 2], "old": True}
        first = c.snapshot("/app")[1]
        c["/app"] = {"db": {"port": 2}, "list": [1], "new": "x"}
        before = keyspace(etcd_server)
        dry_run = invoke(*v3conn, "rollback", "/app", str(first), "--dry-run")
        assert dry_run.exit_code == 0, dry_run.stderr
        assert dry_run.stdout.splitlines() == [
            "~ /app/db/port: 2 -> 1",
            "+ /app/list/00000000000000000001 = 2",
            '- /app/new = "x"',
            "+ /app/old = true",
        ]
        assert dry_run.stderr == "dry run: 2 added, 1 changed, 1 removed at /app; nothing written\n"
        assert keyspace(etcd_server) == before

        done = invoke(*v3conn, "rollback", "/app", str(first))
        assert done.exit_code == 0, done.stderr
        written = int(done.stdout)
        assert same(c["/app"], {"db": {"port": 1}, "list": [1, 2], "old": True})
        assert c.snapshot("/app")[1] == written > before[0][0]
        assert invoke(*v3conn, "diff", "/app", "--rev", str(first)).exit_code == 0

        # a leaf above PATH, which the rollback replaces, is listed by --dry-run
        c["/app"] = "flat"
        above = invoke(*v3conn, "rollback", "/app/db", str(first), "--dry-run")
        assert above.stdout.splitlines() == ['- /app = "flat"', "+ /app/db/port = 1"]
        assert c["/app"] == "flat"
        # to a revision when nothing was stored: PATH is deleted
        gone = invoke(*v3conn, "rollback", "/app", str(first - 1))
        assert gone.exit_code == 0
        assert int(gone.stdout) > written
        assert "/app" not in c
    root = invoke(*v3conn, "rollback", "/", str(first))
    assert root.exit_code == 2
    assert "root" in one_line(root.stderr)


def test_a_compacted_revision_names_the_oldest_kept(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str
) -> None:
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
        c["/c"] = 1
        old = c.snapshot("/c")[1]
        c["/c"] = 2
        kept = c.snapshot("/", None)[1]
        etcd_server.etcdctl("compact", str(kept))
        before = keyspace(etcd_server)
        for args in (
            ["get", "/c", "--rev", str(old)],
            ["diff", "/c", "--rev", str(old)],
            ["history", "/c", "--from", str(old)],
            ["history", "/c", "--from", "1"],
            ["rollback", "/c", str(old), "--dry-run"],
            ["rollback", "/c", str(old)],
        ):
            result = invoke(*v3conn, *args)
            assert result.exit_code == 2, (args, result.stderr)
            assert f"the oldest revision etcd keeps is {kept}" in one_line(result.stderr), args
        assert keyspace(etcd_server) == before
        # from the oldest revision kept: the tree then
        since = invoke(*v3conn, "history", "/c", "--from", str(kept))
        assert since.exit_code == 0, since.stderr
        assert [json.loads(line) for line in since.stdout.splitlines()] == [
            {"revision": kept, "value": 2}
        ]
        assert invoke(*v3conn, "rollback", "/c", str(kept)).exit_code == 0


def test_past_revisions_need_v3(v3conn: list[str], etcd_server: Any, etcd_prefix: str) -> None:
    v2 = [*v3conn, "--api", "v2"]
    assert invoke(*v2, "put", "/x", "1").exit_code == 0
    before = keyspace(etcd_server)
    for args in (
        ["get", "/x", "--rev", "2"],
        ["history", "/x"],
        ["rollback", "/x", "2"],
        ["rollback", "/x", "2", "--dry-run"],
    ):
        result = invoke(*v2, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert "needs the v3 API (api = v3)" in one_line(result.stderr), args
    assert keyspace(etcd_server) == before


# -- watch ------------------------------------------------------------------------


def _interruptible() -> None:
    """In the child before it runs Python: Ctrl-C's default action.  A run started
    in the background by a shell without job control (``cmd &`` in a script, as CI
    may) ignores SIGINT, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("api", APIS)
def test_watch_prints_a_json_line_per_change_until_interrupted(
    conn: list[str], etcd_server: Any, etcd_prefix: str, api: str
) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "link.etcd", *conn, "watch", "/w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    lines: list[dict[str, Any]] = []

    def read_lines() -> None:
        for line in watcher.stdout or ():
            lines.append(json.loads(line))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        with EtcdMiddleware(
            endpoints=[etcd_server.endpoint], prefix=etcd_prefix, **connection(api)
        ) as c:
            deadline = time.monotonic() + 20
            while not lines:  # the watch is ready once it reports something
                assert time.monotonic() < deadline, watcher.stderr
                assert watcher.poll() is None, watcher.stderr
                c["/w/ping"] = 1
                time.sleep(0.2)
            c["/w/db/port"] = 5432
            c["/w/db/host"] = "42"
            del c["/w/db/port"]
            while len([x for x in lines if x["path"].startswith("/w/db")]) < 3:
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
    finally:
        watcher.send_signal(signal.SIGINT)
        status = watcher.wait(20)
    changes = [(x["path"], x["type"], x["value"]) for x in lines if x["path"].startswith("/w/db")]
    assert changes == [
        ("/w/db/port", "PUT", 5432),
        ("/w/db/host", "PUT", "42"),
        ("/w/db/port", "DELETE", None),
    ]
    assert all(isinstance(x["revision"], int) and x["revision"] > 0 for x in lines)
    assert status == 0
    assert watcher.stderr is not None
    assert watcher.stderr.read() == ""


def test_watch_stops_after_count_changes(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str
) -> None:
    results: list[Result] = []
    watcher = threading.Thread(
        target=lambda: results.append(invoke(*v3conn, "watch", "/w", "-n", "2"))
    )
    watcher.start()
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as c:
        for value in range(200):  # until the watch has seen two changes
            if not watcher.is_alive():
                break
            c["/w/k"] = value
            time.sleep(0.05)
    watcher.join(10)
    assert not watcher.is_alive()
    assert results[0].exit_code == 0
    lines = [json.loads(line) for line in results[0].stdout.splitlines()]
    assert len(lines) == 2
    assert lines[1]["value"] == lines[0]["value"] + 1


# -- exit statuses, errors, the password ----------------------------------------------


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_connection_errors_exit_3_with_one_line() -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    result = invoke("--endpoints", endpoint, "--timeout", "0.5", "get", "/app")
    assert result.exit_code == 3
    assert endpoint in one_line(result.stderr)
    # a process ends at once, with that one line (no noise from gRPC's threads)
    started = time.monotonic()
    process = run("get", "/app", "--endpoints", endpoint, "--timeout", "0.5", timeout=30)
    assert process.returncode == 3
    assert time.monotonic() - started < 15
    assert endpoint in one_line(process.stderr)
    for transport in ("gateway",):
        result = invoke("--endpoints", endpoint, "--timeout", "0.5", "--transport", transport, "ls")
        assert result.exit_code == 3
    assert invoke("--endpoints", endpoint, "--api", "v2", "--timeout", "0.5", "ls").exit_code == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command"),
        (["get"], "Missing argument 'PATH'"),
        (["get", "/a", "--nope"], "No such option"),
        (["get", "/a", "-o", "xml"], "'xml' is not one of"),
        (["--timeout", "0", "get", "/a"], "--timeout"),
        (["--ca-cert", "/no/such/ca.pem", "get", "/a"], "does not exist"),
        (["--endpoints", "http://a/b", "get", "/a"], "endpoint"),
        (["--uri", "http://x", "get", "/a"], "scheme must be one of"),
        (["put", "/a"], "Missing argument 'VALUE'"),
        (["diff", "/a", "--rev", "0..2"], "revisions are > 0"),
        (["get", "/a", "--rev", "0"], "--rev"),
        (["put", "/a", "1", "--ttl", "0"], "--ttl"),
        (["history", "/a", "--from", "x"], "--from"),
        (["rollback", "/a"], "Missing argument 'REV'"),
        (["rollback", "/a", "0"], "REV"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in one_line(result.stderr)


def test_no_command_prints_help_and_exits_2() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Commands:" in result.stderr
    assert "load" in result.stderr


def test_missing_optional_dependency_has_an_install_hint(
    v3conn: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails
    result = invoke(*v3conn, "load", "/app", "a.yaml")
    assert result.exit_code == 2
    assert "needs PyYAML: pip install 'link.etcd[cli]'" in one_line(result.stderr)
    script = "import sys; sys.modules['click'] = None; from link.etcd.cli import main; main(['ls'])"
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert process.returncode == 2
    assert "needs click: pip install 'link.etcd[cli]'" in one_line(process.stderr)


APP_PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EtcdServer]:
    with EtcdServer(enable_v2=False) as server:
        server.etcdctl("user", "add", f"app:{APP_PASSWORD}", "--interactive=false")
        server.etcdctl("role", "add", "app-role")
        server.etcdctl(
            "role", "grant-permission", "app-role", "--prefix=true", "readwrite", "/app/"
        )
        server.etcdctl("user", "grant-role", "app", "app-role")
        server.enable_auth("root-pw")
        server.etcdctl("--user=root:root-pw", "put", "/app/x", "42")
        yield server


def test_password_from_environment_and_never_shown(auth_server: EtcdServer) -> None:
    base = ["--endpoints", auth_server.endpoint, "--user", "app"]
    good = {"LINK_ETCD_PASSWORD": APP_PASSWORD}
    ok = invoke(*base, "get", "/app/x", env=good)
    assert (ok.exit_code, ok.stdout) == (0, "42\n")

    outcomes = [
        (invoke(*base, "get", "/app/x", env={"LINK_ETCD_PASSWORD": "wrong-" + APP_PASSWORD}), 3),
        (
            invoke(
                *base, "--debug", "get", "/app/x", env={"LINK_ETCD_PASSWORD": "x" + APP_PASSWORD}
            ),
            3,
        ),
        (invoke(*base, "put", "/other", "1", env=good), 3),  # permission denied
        (invoke(*base, "--debug", "put", "/other", "1", env=good), 3),
        (invoke(*base, "get", "/app/x"), 3),  # no password and no terminal to ask on
        (invoke("--endpoints", auth_server.endpoint, "get", "/app/x"), 3),  # no user at all
        (invoke("--endpoints", auth_server.endpoint, "--user", f"app:{APP_PASSWORD}", "ls"), 2),
        (invoke("--uri", f"etcd://app:{APP_PASSWORD}@{auth_server.endpoint[7:]}", "ls"), 2),
        (invoke(*base, "config", env=good), 0),
        (invoke(*base, "config", "-o", "json", env=good), 0),
    ]
    for result, status in outcomes:
        assert result.exit_code == status, result.stderr
        assert APP_PASSWORD not in result.stdout + result.stderr
    wrong, _ = outcomes[0]
    assert "authentication failed" in one_line(wrong.stderr)
    assert "permission denied" in one_line(outcomes[2][0].stderr)
    assert "LINK_ETCD_PASSWORD" in one_line(outcomes[4][0].stderr)
    assert "give the user name only" in one_line(outcomes[6][0].stderr)
    assert "holds a password" in one_line(outcomes[7][0].stderr)
    assert json.loads(outcomes[9][0].stdout)["settings"]["password"] == "***"


def test_password_prompt_on_a_terminal(auth_server: EtcdServer) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: link-etcd on a terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "link.etcd",
                "--endpoints",
                auth_server.endpoint,
                "--user",
                "app",
                "get",
                "/app/x",
            ],
        )
    output = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Password of etcd user app" in output:
            os.write(fd, APP_PASSWORD.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert answered, output
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert output.rstrip().endswith(b"42")
    assert APP_PASSWORD.encode() not in output  # hidden input, and never printed


# -- config, completion, demo, the console script --------------------------------------


def test_config_shows_each_setting_and_its_source(
    etcd_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "confdir" / "link" / "etcd" / "middleware.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[ETCD]\nprefix = /from-file\nread_timeout = 2.5\napi = v2\n")
    monkeypatch.setenv("B3J0F_CONF_DIR", str(tmp_path / "confdir"))
    monkeypatch.setenv("LINK_ETCD_API", "v3")
    result = invoke("--endpoints", "https://e1:1,https://e2:2", "config")
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()[3:]}
    assert rows["prefix"] == ["/from-file", f"file {conf}"]
    assert rows["read_timeout"] == ["2.5", f"file {conf}"]
    assert rows["api"] == ["v3", "environment variable LINK_ETCD_API"]
    assert rows["endpoints"] == ["https://e1:1,", "https://e2:2  option --endpoints"]
    assert rows["protocol"] == ["https", "the scheme of the endpoints"]
    assert rows["port"] == ["2379", "default"]
    assert f"files read: {conf}" in result.stdout
    as_json = json.loads(invoke("--uri", "etcd://h:1/p", "config", "-o", "json").stdout)
    assert as_json["sources"]["host"] == "option --uri"
    assert as_json["urls"] == ["http://h:1"]

    conf.write_text("[ETCD]\nport = many\n")
    bad = invoke("config")
    assert bad.exit_code == 2
    assert str(conf) in one_line(bad.stderr)
    assert "many" in bad.stderr


@pytest.mark.parametrize("api", ["v3-grpc"])
def test_shell_completion(conn: list[str], etcd_server: Any, etcd_prefix: str) -> None:
    script = invoke("completion", "bash")
    assert script.exit_code == 0
    assert "_LINK_ETCD_COMPLETE" in script.stdout
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        client["/app"] = {"db": 1, "dns": 2, "x": 3}
    completer = ShellComplete(cli, {}, "link-etcd", "_LINK_ETCD_COMPLETE")
    found = completer.get_completions([*conn, "get"], "/app/d")
    assert [item.value for item in found] == ["/app/db", "/app/dns"]
    assert [i.value for i in completer.get_completions([*conn, "ls"], "/a")] == ["/app"]


def test_demo_on_a_configured_cluster_asks_first(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "doc.json").write_text(json.dumps(TRICKY))
    args = [*v3conn, "demo", "--document", "doc.json", "--path", "/demo"]
    refused = invoke(*args)
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert "will delete everything at /demo" in refused.stderr
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        assert "/demo" not in client
        result = invoke(*args, "--yes")
        assert result.exit_code == 0, result.stderr
        assert "v3: write" in result.stdout
        assert "read back equal" in result.stdout
        assert same(client["/demo"], TRICKY)


def test_demo_starts_a_throwaway_server_when_nothing_is_configured(tmp_path: Path) -> None:
    (tmp_path / "doc.json").write_text(json.dumps(TRICKY))
    result = invoke("demo", "--document", "doc.json")
    assert result.exit_code == 0, result.stderr
    assert "started a throwaway etcd" in result.stdout
    assert result.stdout.count("read back equal") == 2  # v3 and v2


@pytest.mark.parametrize("api", ["v3-grpc"])
def test_load_and_dump_print_no_progress(
    conn: list[str], real_document: Any, tmp_path: Path
) -> None:
    (tmp_path / "pip.json").write_text(json.dumps(real_document))
    loaded = invoke(*conn, "load", "/pip", "pip.json")  # about 3,000 keys: several txns
    assert loaded.exit_code == 0, loaded.stderr
    assert loaded.stderr.count("\n") == 1
    assert " in several txns " in loaded.stderr
    dumped = invoke(*conn, "dump", "/pip")
    assert dumped.exit_code == 0
    assert dumped.stderr == ""
    assert json.loads(dumped.stdout) == real_document
    for args in (["load", "/pip", "pip.json"], ["dump", "/pip"]):  # no bar to show any more
        refused = invoke(*conn, *args, "--progress")
        assert refused.exit_code == 2
        assert "No such option" in one_line(refused.stderr)


def test_console_script_and_python_dash_m() -> None:
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts.get("link-etcd") == "link.etcd.cli:main"
    version = run("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("link-etcd, version ")
    help_text = run("--help").stdout
    commands = ("get", "ls", "put", "rm", "load", "dump", "diff", "watch", "history", "rollback")
    for command in (*commands, "config", "demo"):
        assert f"\n  {command} " in help_text


def test_dump_to_a_file_replaces_it_only_after_a_good_read(
    v3conn: list[str], tmp_path: Path
) -> None:
    target = tmp_path / "backup.yaml"
    target.write_text("old: content\n")
    missing = invoke(*v3conn, "dump", "/nothing", "-f", str(target))
    assert missing.exit_code == 1
    assert target.read_text() == "old: content\n"
    assert invoke(*v3conn, "put", "/app/k", "v").exit_code == 0
    assert invoke(*v3conn, "dump", "/app", "-f", str(target)).exit_code == 0
    assert target.read_text() == "k: v\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")] == []
    unwritable = invoke(*v3conn, "dump", "/app", "-f", str(tmp_path / "no" / "dir.json"))
    assert unwritable.exit_code == 2
    assert "cannot write" in one_line(unwritable.stderr)


def test_values_that_are_not_utf8_need_yaml_and_compare_as_bytes(
    v3conn: list[str], etcd_server: Any, etcd_prefix: str, tmp_path: Path
) -> None:
    put_raw(etcd_server, f"{etcd_prefix}/bin/raw", b"\xff\xfe")
    as_json = invoke(*v3conn, "get", "/bin")
    assert as_json.exit_code == 2
    assert "/bin/raw is not UTF-8 text" in one_line(as_json.stderr)
    assert "-o yaml" in as_json.stderr
    as_yaml = invoke(*v3conn, "get", "/bin", "-o", "yaml")
    assert as_yaml.exit_code == 0
    assert "!!binary" in as_yaml.stdout
    assert base64.b64decode(as_yaml.stdout.split()[-1]) == b"\xff\xfe"
    # diff and load compare the bytes as stored, and load replaces them
    (tmp_path / "text.json").write_text('{"raw": "text", "new": 1}')
    expected = ["+ /bin/new = 1", '~ /bin/raw: <2 bytes> -> "text"']
    differ = invoke(*v3conn, "diff", "/bin", "text.json")
    assert differ.exit_code == 1
    assert differ.stdout.splitlines() == expected
    dry_run = invoke(*v3conn, "load", "/bin", "text.json", "--dry-run")
    assert dry_run.exit_code == 0
    assert dry_run.stdout.splitlines() == expected
    assert invoke(*v3conn, "load", "/bin", "text.json").exit_code == 0
    assert invoke(*v3conn, "get", "/bin").stdout == '{"new":1,"raw":"text"}\n'


def test_the_operator_session_of_the_docs_runs_as_written(tmp_path: Path) -> None:
    block = DOCS.read_text().split("<!-- session -->\n```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    with EtcdServer(enable_v2=False) as server:  # fresh: its revisions are the docs'
        run_session(steps, {"LINK_ETCD_ENDPOINTS": server.endpoint}, tmp_path)


def run_session(steps: list[tuple[str, list[str]]], env: dict[str, str], tmp_path: Path) -> None:
    """Run each ``$ command`` and compare its output with the lines after it."""
    status = 0
    for command, expected in steps:
        words = shlex.split(command)
        if words == ["cat", "app.json"]:  # the file the session starts from
            (tmp_path / "app.json").write_text("\n".join(expected) + "\n")
            output = (tmp_path / "app.json").read_text()
        elif words[0] == "cat":
            output = (tmp_path / words[1]).read_text()
        elif words[0] == "sed":
            subprocess.run(words, check=True, cwd=tmp_path)
            output = ""
        elif words == ["echo", "$?"]:
            output = f"{status}\n"
        else:
            assert words[0] == "link-etcd", command
            result = invoke(*words[1:], env=env)
            status, output = result.exit_code, result.output
        assert output.splitlines() == expected, command


# -- progress bars ------------------------------------------------------------------


def run_on_terminal_stderr(
    args: list[str], stdin: Path | None, stdout: Path, env: dict[str, str]
) -> tuple[int, str]:
    """Run ``python -m link.etcd ARGS`` with stderr on a pseudo-terminal (stdin and
    stdout on files); its exit status and what it wrote to the terminal."""
    master, slave = pty.openpty()
    # a terminal of 100 x 24 (a new pty has 0 columns, where tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(stdout, "wb") as out, open(stdin or os.devnull, "rb") as inp:
        process = subprocess.Popen(
            [sys.executable, "-m", "link.etcd", *args],
            stdin=inp,
            stdout=out,
            stderr=slave,
            env={**os.environ, **env},
        )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(30), screen.decode(errors="replace")


def test_load_and_dump_show_a_bar_on_a_terminal_only(
    etcd_server: Any, etcd_prefix: str, tmp_path: Path
) -> None:
    document = {f"k{i}": {"n": i, "s": str(i)} for i in range(1500)}  # 3,000 leaves, 24 txns
    source = tmp_path / "in.json"
    source.write_text(json.dumps(document))
    conn = ["--endpoints", etcd_server.endpoint, "--prefix", etcd_prefix]
    env = {"TQDM_DELAY": "0"}  # the bar at once, however fast etcd is

    status, screen = run_on_terminal_stderr(
        [*conn, "load", "/big", str(source)], None, tmp_path / "load.out", env
    )
    assert status == 0, screen
    assert "writing /big" in screen, screen
    assert "/3000" in screen, screen
    assert "loaded /big" in screen

    status, screen = run_on_terminal_stderr(
        [*conn, "dump", "/big"], None, tmp_path / "dump.out", env
    )
    assert status == 0, screen
    assert "reading /big" in screen, screen
    assert "/3000" in screen, screen
    assert json.loads((tmp_path / "dump.out").read_text()) == document

    piped = run(*conn, "dump", "/big", env=env)  # stderr is a pipe: no bar
    assert piped.returncode == 0
    assert piped.stderr == ""
    piped = run(*conn, "load", "/big2", str(source), env=env)
    assert piped.returncode == 0
    assert "keys" not in piped.stderr
    assert "\r" not in piped.stderr
    assert piped.stderr.startswith("loaded /big2")
