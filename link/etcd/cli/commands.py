"""``link-etcd`` commands that look at one path: get, ls, put, rm, watch; and config,
completion."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import click
from click.shell_completion import get_completion_class

from .. import codec
from ..backends.v3 import V3Backend
from ..errors import EtcdKeyNotFound
from ..middleware import EtcdMiddleware
from ..paths import SEP, split_path
from ..settings import FIELD_NAMES
from . import trees
from .app import cli, complete_path, is_terminal, out
from .connection import connect, connection_options, resolve, state_of
from .errors import OK, CliError
from .formats import OUTPUT_FORMATS, json_line, parse_scalar, render
from .transfer import read_at


def _missing(path: str) -> EtcdKeyNotFound:
    return EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)


def _child(path: str, name: str) -> str:
    return f"{path.rstrip(SEP)}{SEP}{name}"


# -- get ----------------------------------------------------------------------


@cli.command(short_help="Print the tree or leaf at PATH (JSON, YAML, TOML).")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="json",
    show_default=True,
    help="format (toml: when the tree is a table without nulls)",
)
@click.option(
    "--pretty/--compact",
    default=None,
    help="indented or one-line JSON (default: indented on a terminal, compact when piped)",
)
@click.option("--raw", is_flag=True, help="print a string leaf as plain text, without quotes")
@click.option(
    "--rev",
    "revision",
    type=click.IntRange(min=1),
    metavar="REV",
    help="the tree as it was at revision REV (v3)",
)
@connection_options(hidden=True)
@click.pass_context
def get(
    ctx: click.Context,
    path: str,
    output: str,
    pretty: bool | None,
    raw: bool,
    revision: int | None,
) -> int:
    """Print the tree (or leaf) at PATH (--rev: as it was at a past revision).

    \b
      link-etcd get /app                 {"db":{"host":"h","port":5432}}
      link-etcd get /app/db/port         5432
      link-etcd get /app -o yaml
      link-etcd get /app/db/host --raw   h
      link-etcd get /app --rev 812       the tree at revision 812
    """
    client = connect(ctx)
    if revision is None:
        value = client[path]
    else:
        value = read_at(client, path, revision)
        if value is trees.MISSING:
            raise EtcdKeyNotFound(f"nothing stored at {path!r} at revision {revision}", key=path)
    if raw and isinstance(value, str):
        out(value + "\n")
        return OK
    if pretty is None:
        pretty = is_terminal("stdout")
    out(render(value, output, pretty=pretty, where=path))
    return OK


# -- ls -----------------------------------------------------------------------


@cli.command(name="ls", short_help="List the children of PATH.")
@click.argument("path", default="/", shell_complete=complete_path)
@click.option("-l", "long", is_flag=True, help="add the kind (dir, list, leaf) and the key count")
@click.option(
    "-r", "-R", "--recursive", is_flag=True, help="every path below PATH, directories and leaves"
)
@connection_options(hidden=True)
@click.pass_context
def ls(ctx: click.Context, path: str, long: bool, recursive: bool) -> int:
    """List the children of PATH (default: the root).

    Names are key segments, as etcd stores them: list items are 20-digit
    positions, and `/` or `%` in a name are escaped (`%2F`, `%25`), so
    `link-etcd get PATH/NAME` reads each one.  -r prints full paths.
    """
    client = connect(ctx)
    segments = split_path(path)
    value = client.get(path, trees.MISSING)
    if value is trees.MISSING:
        if segments:
            raise _missing(path)
        value = {}
    names = _names(client, path, recursive)
    if not isinstance(value, dict | list):  # a leaf: itself, as ls shows a file
        entries: Iterator[tuple[str, str, Any]] = iter([(path, segments[-1], value)])
    else:
        entries = _entries(path, value, names, recursive)
    for child_path, name, child in entries:
        shown = child_path if recursive else name
        if long:
            shown = f"{trees.kind(child):<4}  {trees.count_keys(child):>8}  {shown}"
        out(shown + "\n")
    return OK


def _names(client: EtcdMiddleware, path: str, recursive: bool) -> Callable[[str], list[str]]:
    """``names(path)``: the sorted key segments of the children of ``path``.

    v3 reads the whole subtree's keys once (``-r``: ``backend.read(keys_only=True)``);
    otherwise (and on v2) one request per directory listed.
    """
    backend = client.backend
    if recursive and isinstance(backend, V3Backend):
        read = backend.read(client.key(path), keys_only=True)
        tree = trees.key_tree((kv.key for kv in read.items), client.key(path))
        base = split_path(path)

        def from_tree(at: str) -> list[str]:
            node = tree
            for segment in split_path(at)[len(base) :]:
                node = node.get(segment, {})
            return sorted(node, key=lambda name: name.encode("utf-8", "surrogateescape"))

        return from_tree
    return client.children


def _entries(
    path: str, value: Any, names: Callable[[str], list[str]], recursive: bool
) -> Iterator[tuple[str, str, Any]]:
    """``(path, name, value)`` of each child (of each descendant with ``recursive``),
    depth first in key order."""
    for name, child in trees.children_of(value, names(path)):
        if child is trees.MISSING:
            continue
        child_path = _child(path, name)
        yield child_path, name, child
        if recursive and isinstance(child, dict | list) and child:
            yield from _entries(child_path, child, names, recursive)


# -- put, rm ------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True},
    short_help="Store one value at PATH, parsed like a stored leaf.",
)
@click.argument("path", shell_complete=complete_path)
@click.argument("value")
@click.option("--string", is_flag=True, help="store VALUE as text, whatever it looks like")
@click.option("--force", is_flag=True, help="replace a directory at PATH with the value")
@click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="delete the value after SECONDS (v3: a lease, whole seconds rounded up; v2: a TTL)",
)
@connection_options(hidden=True)
@click.pass_context
def put(
    ctx: click.Context, path: str, value: str, string: bool, force: bool, ttl: float | None
) -> int:
    """Store one value at PATH, parsed like a stored leaf.

    \b
      link-etcd put /app/db/port 5432        the int 5432
      link-etcd put /app/db/port '"5432"'    the string "5432"
      link-etcd put /app/db/port 5432 --string
      link-etcd put /app/ratio -0.5          (negative numbers are values)
      link-etcd put /app/db/host db1         text: the string "db1"
      link-etcd put /app/lock me --ttl 30    gone after 30 seconds

    true, false, null, {} and [] are what they say; any text that is not
    JSON is the string itself.  A directory at PATH is replaced only with
    --force (use load to write a tree).
    """
    parsed = parse_scalar(value, string=string)
    client = connect(ctx)
    codec.encode(parsed, path)  # refuse bad input before any request
    if not force:
        below = client.children(path)
        if below:
            raise CliError(
                f"{path} is a directory ({len(below)} children): put writes one value; "
                "use --force to replace the directory, or load to write a tree"
            )
    if ttl is None:
        client[path] = parsed
    else:
        client.set(path, parsed, ttl=ttl)
    return OK


@cli.command(short_help="Remove a leaf, or a directory with -r.")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-r", "-R", "--recursive", is_flag=True, help="remove a directory and everything below"
)
@connection_options(hidden=True)
@click.pass_context
def rm(ctx: click.Context, path: str, recursive: bool) -> int:
    """Remove the leaf at PATH, or with -r the whole directory (one txn on v3)."""
    client = connect(ctx)
    if not split_path(path):
        raise CliError("the root cannot be removed as a whole; remove the paths below it")
    if not recursive:
        below = client.children(path)
        if below:
            raise CliError(f"{path} is a directory ({len(below)} children): use rm -r")
    del client[path]
    return OK


# -- watch --------------------------------------------------------------------


@cli.command(short_help="Print one JSON line per change below PATH.")
@click.argument("path", shell_complete=complete_path)
@click.option("-n", "--count", type=click.IntRange(min=1), help="stop after this many changes")
@connection_options(hidden=True)
@click.pass_context
def watch(ctx: click.Context, path: str, count: int | None) -> int:
    """Print one JSON line per change below PATH, until interrupted (Ctrl-C).

    \b
      {"path": "/app/db/port", "type": "PUT", "value": 5433, "revision": 812}
      {"path": "/app/old", "type": "DELETE", "value": null, "revision": 813}

    One line per key changed, as etcd reports them (a load of many keys is
    many lines); a value that is not UTF-8 comes as "value_base64".
    """
    stream = connect(ctx).watch(path)
    seen = 0
    try:
        for event in stream:
            line = {
                "path": event.path,
                "type": event.type,
                "value": event.value,
                "revision": event.revision,
            }
            out(json_line(line, where=event.path))
            seen += 1
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass  # the normal end of a watch
    finally:
        stream.cancel()
    return OK


# -- config -------------------------------------------------------------------


@cli.command(short_help="Print the settings and where each came from.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@connection_options(hidden=True)
@click.pass_context
def config(ctx: click.Context, output: str) -> int:
    """Print the resolved settings (password masked) and where each came from.

    Nothing is sent to etcd.  Sources, weakest first: default, each
    middleware.conf file read, LINK_ETCD_* variables, LINK_ETCD_URI or --uri,
    the options given.
    """
    resolved = resolve(state_of(ctx))
    settings = resolved.settings
    shown: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = getattr(settings, name)
        if name == "password" and value is not None:
            value = "***"
        shown[name] = list(value) if isinstance(value, tuple) else value
    if output == "json":
        document = {
            "settings": shown,
            "sources": resolved.sources,
            "files": [str(file) for file in resolved.files],
            "urls": list(settings.urls),
        }
        out(json.dumps(document, indent=2) + "\n")
        return OK
    files = ", ".join(str(file) for file in resolved.files) or "none found"
    out(f"files read: {files}\nconnects to: {', '.join(settings.urls)}\n\n")
    width = max(len(name) for name in FIELD_NAMES)
    texts = {name: _setting_text(value) for name, value in shown.items()}
    value_width = min(max(len(text) for text in texts.values()), 40)
    for name in FIELD_NAMES:
        out(f"{name:<{width}}  {texts[name]:<{value_width}}  {resolved.sources[name]}\n")
    return OK


def _setting_text(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return str(value)


# -- completion ---------------------------------------------------------------


@cli.command(short_help="Print the shell completion script.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the shell completion script for SHELL.

    \b
      eval "$(link-etcd completion bash)"      # in ~/.bashrc
      eval "$(link-etcd completion zsh)"       # in ~/.zshrc
      link-etcd completion fish > ~/.config/fish/completions/link-etcd.fish

    Commands, options and PATHs complete (paths are read from etcd).
    """
    completer = get_completion_class(shell)
    if completer is None:  # pragma: no cover - click ships all three
        raise CliError(f"no completion for {shell}")
    script = completer(cli, {}, "link-etcd", "_LINK_ETCD_COMPLETE").source()
    out(script if script.endswith("\n") else script + "\n")
    return OK
