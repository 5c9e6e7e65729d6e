"""``link-etcd load``, ``dump`` and ``diff``: whole trees between etcd and documents.

Every read and write is one call of the library (``client.snapshot``,
``client.set(..., if_revision=)``, ``client[path] = tree``); what is computed
here is for people: the leaves that differ (:mod:`.trees`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import click

from ..backends.v3 import V3Backend
from ..errors import (
    EtcdCompacted,
    EtcdCompareFailed,
    EtcdKeyNotFound,
    EtcdTxnTooLarge,
    EtcdUnsupported,
)
from ..history import oldest_revision
from ..middleware import EtcdMiddleware
from ..paths import SEP, split_path
from .app import cli, complete_path, is_terminal, out
from .connection import connect, connection_options
from .errors import FAILED, OK, CliError
from .formats import INPUT_FORMATS, OUTPUT_FORMATS, format_of, leaf_text, parse_document, render
from .progress import progress_bar
from .trees import MISSING, Change, compare, summary
from .trees import merge as merge_trees

_COLORS = {"added": "green", "removed": "red", "changed": "yellow"}


def read_document(file: str | None, fmt: str | None) -> Any:
    """The document of ``FILE`` (``-`` or None: stdin), parsed and checked.

    :param fmt: ``-f``; None: from the extension, else guessed (see
        :func:`link.etcd.cli.formats.parse_document`).
    :raises click.UsageError: no FILE and stdin is a terminal (nothing piped).
    :raises CliError: status 2: unreadable, not UTF-8, not a valid document.
    """
    if file is None or file == "-":
        if file is None and is_terminal("stdin"):
            raise click.UsageError("give FILE, or pipe a document into stdin")
        data, source = sys.stdin.buffer.read(), "stdin"
    else:
        try:
            with open(file, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise CliError(f"{file}: cannot read ({exc.strerror or exc})") from exc
        source = file
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_document(text, format_of(file, fmt), source)


def print_changes(changes: list[Change], color: bool | None) -> None:
    """One line per change on stdout: ``+ path = value``, ``- path = value``,
    ``~ path: old -> new`` (green, red, yellow on a terminal)."""
    for change in changes:
        if change.kind == "added":
            line = f"+ {change.path} = {leaf_text(change.new)}"
        elif change.kind == "removed":
            line = f"- {change.path} = {leaf_text(change.old)}"
        else:
            line = f"~ {change.path}: {leaf_text(change.old)} -> {leaf_text(change.new)}"
        out(click.style(line, fg=_COLORS[change.kind]) + "\n", color=color)


# -- load ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What ``load`` will do, worked out from one read of PATH (see :func:`plan_load`).

    :attr path: the path written.
    :attr current: the tree read (:data:`~link.etcd.cli.trees.MISSING`: nothing).
    :attr new: the tree that will be stored.
    :attr revision: the revision (v3) or index (v2) of the read.
    :attr changes: the leaves that differ, for people (:func:`trees.compare`).
    """

    path: str
    current: Any
    new: Any
    revision: int
    changes: list[Change]


def plan_load(client: EtcdMiddleware, path: str, document: Any, *, merge: bool) -> LoadPlan:
    """Read PATH once (``client.snapshot``) and work out what storing ``document``
    there changes; nothing is written.

    :param merge: merge ``document`` into the tree read (:func:`trees.merge`).
    :raises CliError: the root path (status 2).
    :raises EtcdInvalidTree: a bad path.
    """
    if not split_path(path):
        raise CliError(
            "the root cannot be loaded as a whole; load a path below it (or use --prefix)"
        )
    current, revision = client.snapshot(path, MISSING)
    new = merge_trees(current, document) if merge and current is not MISSING else document
    return LoadPlan(path, current, new, revision, compare(current, new, path))


def write_load(client: EtcdMiddleware, plan: LoadPlan) -> str:
    """Store ``plan.new`` at ``plan.path``; how it was written, for the summary.

    v3: ``client.set(path, new, if_revision=plan.revision)``, one txn that writes
    only if nothing at or below PATH changed after the read.  When the tree does
    not fit in one txn, ``client[path] = new``: several txns, retried until one
    whole tree is stored (the last writer's), guarded by the library's own read,
    not by ``plan``'s.  v2: ``client[path] = new`` (no transactions).

    :raises CliError: status 1: PATH changed after the read; nothing was written.
    """
    if client.settings.api == "v2":
        client[plan.path] = plan.new
        return ""
    try:
        client.set(plan.path, plan.new, if_revision=plan.revision)
        return " in one txn"
    except EtcdCompareFailed as exc:
        raise CliError(
            f"{plan.path} changed after it was read at revision {plan.revision}; nothing was "
            "written: run the command again",
            FAILED,
        ) from exc
    except EtcdTxnTooLarge:
        pass
    client[plan.path] = plan.new
    return " in several txns (too large for one: not atomic, the last writer wins)"


def ancestor_leaves(client: EtcdMiddleware, path: str) -> list[Change]:
    """The leaf stored at an ancestor of PATH, which storing a tree at PATH deletes.

    Looked for from the parent up, only when nothing is stored at PATH (else its
    ancestors are directories): the first ancestor that exists is a leaf when it
    has no children.
    """
    segments = split_path(path)
    for depth in range(len(segments) - 1, 0, -1):
        above = "".join(SEP + segment for segment in segments[:depth])
        if above not in client:
            continue
        if client.children(above):
            return []
        return compare(client.get(above, MISSING), MISSING, above)
    return []


@cli.command(short_help="Store a JSON, YAML or TOML document at PATH.")
@click.argument("path", shell_complete=complete_path)
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(INPUT_FORMATS),
    help="format of FILE (default: from its extension; stdin: JSON or else YAML)",
)
@click.option("--merge", is_flag=True, help="merge into the tree at PATH instead of replacing it")
@click.option("--dry-run", is_flag=True, help="print what would change; write nothing")
@click.option("--color/--no-color", default=None, help="colour --dry-run (default: on a terminal)")
@connection_options(hidden=True)
@click.pass_context
def load(
    ctx: click.Context,
    path: str,
    file: str | None,
    fmt: str | None,
    merge: bool,
    dry_run: bool,
    color: bool | None,
) -> int:
    """Store the JSON, YAML or TOML document of FILE (or stdin) at PATH.

    The document replaces the tree at PATH (--merge: dicts are merged into it,
    key by key; lists and values are replaced).  It is read and checked whole
    before anything is sent.

    On v3 the write is one txn that applies only to the tree as it was read: a
    concurrent change makes it fail (status 1) with nothing written.  A tree too
    large for one txn (max_txn_ops, max_request_bytes) is written in several
    txns instead: not atomic, and not guarded by that read, so a change made
    meanwhile is overwritten; PATH ends up holding one whole tree (the last
    writer's), never a mix.  v2 has no txns: a plain replace.  See docs/cli.md.
    Large reads and writes show a progress bar on a terminal (stderr).

    \b
      link-etcd dump /app > app.json && $EDITOR app.json
      link-etcd load /app app.json --dry-run
      link-etcd load /app app.json
      link-etcd dump /app | link-etcd load /app-copy
    """
    document = read_document(file, fmt)
    client = connect(ctx)
    with progress_bar("read", f"reading {path}"):
        plan = plan_load(client, path, document, merge=merge)
    if dry_run:
        changes = plan.changes
        if plan.current is MISSING:
            changes = ancestor_leaves(client, path) + changes
        print_changes(changes, color)
        out(f"dry run: {summary(changes)} at {path}; nothing written\n", err=True)
        return OK
    if not plan.changes:
        out(f"{path} already holds the document; nothing written\n", err=True)
        return OK
    with progress_bar("write", f"writing {path}"):
        how = write_load(client, plan)
    out(f"loaded {path}: {summary(plan.changes)}{how}\n", err=True)
    return OK


# -- dump ---------------------------------------------------------------------


@cli.command(short_help="Write the whole tree at PATH as a document.")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-f",
    "--file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="write to FILE (replaced only once the read succeeded) instead of stdout",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    help="format (default: from the extension of FILE, else json)",
)
@connection_options(hidden=True)
@click.pass_context
def dump(ctx: click.Context, path: str, file: str | None, output: str | None) -> int:
    """Write the whole tree at PATH as a document that load reads back exactly.

    JSON (indented) by default; YAML and TOML round-trip too (TOML only holds
    tables without nulls).  One read, at one revision.  A large read shows a
    progress bar on a terminal (stderr), never in a pipe.
    """
    fmt = output or format_of(file, None) or "json"
    client = connect(ctx)
    with progress_bar("read", f"reading {path}"):
        value = client[path]
    text = render(value, fmt, pretty=True, where=path)
    if file is None or file == "-":
        out(text)
    else:
        write_file(file, text)
    return OK


def write_file(file: str, text: str) -> None:
    """Replace ``file`` with ``text`` (UTF-8) atomically: a temporary file in the
    same directory, renamed over it; an existing file keeps its mode.

    :raises CliError: status 2: the file cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(file))
    try:
        mode = os.stat(file).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(file)}.", dir=directory)
    except OSError as exc:
        raise CliError(f"{file}: cannot write ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, file)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CliError(f"{file}: cannot write ({exc.strerror or exc})") from exc
        raise


# -- diff ---------------------------------------------------------------------


def parse_revisions(text: str) -> tuple[int, int]:
    """``'A..B'`` → ``(A, B)``; ``'A..'`` and ``'A'`` → ``(A, 0)`` (0: now).

    :raises click.BadParameter: not revisions, or not > 0.
    """
    first, dots, second = text.partition("..")
    try:
        left = int(first)
        right = int(second) if second else 0
    except ValueError:
        raise click.BadParameter(f"expected A..B, A.. or A (revisions), not {text!r}") from None
    if left <= 0 or right < 0 or (dots and second and right <= 0):
        raise click.BadParameter(f"revisions are > 0: {text!r}")
    return left, right


def read_at(client: EtcdMiddleware, path: str, revision: int, *, what: str = "--rev") -> Any:
    """The tree at PATH (:data:`MISSING`: nothing), now (``revision`` 0) or as it was
    at ``revision`` (``client.snapshot(path, revision=)``, v3).

    :param what: what needs the past revision, for the message on v2.
    :raises CliError: status 2: a revision on v2, or a compacted revision (the
        message names the oldest revision etcd keeps).
    :raises EtcdInvalidTree: ``revision`` is in the future (status 2).
    """
    try:
        return client.snapshot(path, MISSING, revision=revision or None)[0]
    except EtcdUnsupported as exc:
        raise needs_v3(what) from exc
    except EtcdCompacted as exc:
        raise compacted(client, path, revision, exc) from exc


def needs_v3(what: str) -> CliError:
    """The error (status 2) for what only v3 can do: read a past revision."""
    return CliError(f"{what} needs the v3 API (api = v3): v2 keeps no past revisions")


def oldest_kept(client: EtcdMiddleware, path: str) -> int:
    """The oldest revision etcd can still read (a few ``count_only`` reads, v3)."""
    backend = client.backend
    assert isinstance(backend, V3Backend)  # only v3 has a compaction to report
    head = client.snapshot(path, MISSING)[1]
    return oldest_revision(backend, client.key(path), head)


def compacted(client: EtcdMiddleware, path: str, revision: int, exc: EtcdCompacted) -> CliError:
    """The error (status 2) for a read of PATH at a compacted revision, naming the
    oldest revision etcd keeps (``exc.compact_revision``, else looked up)."""
    oldest = exc.compact_revision or oldest_kept(client, path)
    return CliError(
        f"revision {revision} of {path} was compacted: the oldest revision etcd keeps is {oldest}"
    )


@cli.command(short_help="Compare PATH with FILE, or two revisions.")
@click.argument("path", shell_complete=complete_path)
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-f", "--format", "fmt", type=click.Choice(INPUT_FORMATS), help="format of FILE")
@click.option(
    "--rev",
    "revisions",
    metavar="A..B",
    help="compare revision A with revision B (A.. or A: with now; with FILE: A with FILE)",
)
@click.option("--color/--no-color", default=None, help="colour (default: on a terminal)")
@connection_options(hidden=True)
@click.pass_context
def diff(
    ctx: click.Context,
    path: str,
    file: str | None,
    fmt: str | None,
    revisions: str | None,
    color: bool | None,
) -> int:
    """Show the leaves that differ between PATH in etcd and FILE (or two revisions).

    \b
      + /app/db/user = "admin"      in FILE, not in etcd
      - /app/old = 1                in etcd, not in FILE
      ~ /app/db/port: 5432 -> 5433  etcd's value -> FILE's value

    Exit status 0 when equal, 1 when different (a CI gate), 2 for a bad FILE.
    Types count: "42" and 42 differ, so do 1 and 1.0.
    """
    if file is None and revisions is None:
        raise click.UsageError("give FILE, or --rev A..B to compare two revisions")
    left, right = parse_revisions(revisions) if revisions else (0, 0)
    if file is not None and right:
        raise click.UsageError("with FILE, --rev takes one revision (etcd's side)")
    document = read_document(file, fmt) if file is not None else MISSING
    client = connect(ctx)
    old = read_at(client, path, left)
    new = document if file is not None else read_at(client, path, right)
    if old is MISSING and new is MISSING:
        raise EtcdKeyNotFound(f"nothing stored at {path!r}", key=path)
    changes = compare(old, new, path)
    print_changes(changes, color)
    if changes:
        out(f"{summary(changes)}\n", err=True)
        return FAILED
    return OK
