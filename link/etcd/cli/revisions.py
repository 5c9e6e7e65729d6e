"""``link-etcd history`` and ``rollback``: the versions of a tree etcd keeps (v3).

``history`` is the library's ``client.history(path, start_revision)``, one JSON
line per version; ``rollback`` is ``client.rollback(path, revision)``, and with
``--dry-run`` two reads (``client.snapshot``) compared as ``diff`` compares them.
(``get --rev`` and ``diff --rev`` read one past revision: :func:`.transfer.read_at`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from ..errors import EtcdCompacted, EtcdUnsupported
from ..middleware import EtcdMiddleware
from ..paths import split_path
from .app import cli, complete_path, out
from .connection import connect, connection_options
from .errors import OK, CliError
from .formats import json_line
from .transfer import ancestor_leaves, compacted, needs_v3, oldest_kept, print_changes, read_at
from .trees import MISSING, compare, summary

# -- history ------------------------------------------------------------------


@cli.command(short_help="Print every version of PATH etcd keeps, one JSON line each.")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=1),
    metavar="REV",
    help="the versions written at revision REV and after (default: from the oldest kept)",
)
@connection_options(hidden=True)
@click.pass_context
def history(ctx: click.Context, path: str, start: int | None) -> int:
    """Print each version of the tree at PATH that etcd keeps, oldest first (v3).

    \b
      {"revision": 811, "value": {"db": {"port": 5432}}}
      {"revision": 812, "value": {"db": {"port": 5433}}}
      {"revision": 813, "value": null}

    One line per revision that changed something at or below PATH, with the
    whole tree after it ("value": null: nothing stored).  Without --from the
    first line is the tree at the oldest revision etcd keeps.  A leaf that is
    not UTF-8 comes as "value_base64".  Ends at the revision etcd is at.
    """
    client = connect(ctx)
    for revision, value in _versions(client, path, start):
        hint = f": see it with link-etcd get {path} --rev {revision} -o yaml"
        out(json_line({"revision": revision, "value": value}, where=path, hint=hint))
    return OK


def _versions(client: EtcdMiddleware, path: str, start: int | None) -> Iterator[tuple[int, Any]]:
    """``client.history(path, start)``, its errors as the command line reports them.

    :raises CliError: status 2: on v2, or ``start`` was compacted (naming the
        oldest revision etcd keeps).
    """
    try:
        if start == 1:  # the library reads nothing before revision 1: check it is kept
            client.snapshot(path, MISSING, revision=1)
        versions = client.history(path, start)
        first = next(versions, None)
    except EtcdUnsupported as exc:
        raise needs_v3("history") from exc
    except EtcdCompacted as exc:
        oldest = exc.compact_revision or oldest_kept(client, path)
        if start is None or start < oldest:
            raise CliError(
                f"the history of {path} from revision {start} was compacted: the oldest "
                f"revision etcd keeps is {oldest} (use --from {oldest} or later)"
            ) from exc
        # start is the oldest kept, and the library reads the revision before it:
        # read from the oldest kept instead (its first version is the tree then)
        versions = client.history(path)
        first = next(versions, None)
    if first is not None:
        yield first
        yield from versions


# -- rollback -----------------------------------------------------------------


@cli.command(short_help="Store the tree PATH held at revision REV again.")
@click.argument("path", shell_complete=complete_path)
@click.argument("revision", metavar="REV", type=click.IntRange(min=1))
@click.option("--dry-run", is_flag=True, help="print what would change; write nothing")
@click.option("--color/--no-color", default=None, help="colour --dry-run (default: on a terminal)")
@connection_options(hidden=True)
@click.pass_context
def rollback(
    ctx: click.Context, path: str, revision: int, dry_run: bool, color: bool | None
) -> int:
    """Store the tree PATH held at revision REV again, and print the revision of
    the write (v3).  Nothing stored at PATH then: PATH is deleted.

    One txn guarded by its read when the tree fits in one (atomic), else a
    plain replace.  --dry-run prints the changes, as diff does (now -> REV),
    and writes nothing.

    \b
      link-etcd history /app
      link-etcd rollback /app 811 --dry-run
      link-etcd rollback /app 811
    """
    if not split_path(path):
        raise CliError("the root cannot be rolled back as a whole; roll back a path below it")
    client = connect(ctx)
    if dry_run:
        old = read_at(client, path, revision, what="rollback")
        now = read_at(client, path, 0)
        changes = compare(now, old, path)
        if now is MISSING and old is not MISSING:
            changes = ancestor_leaves(client, path) + changes
        print_changes(changes, color)
        out(f"dry run: {summary(changes)} at {path}; nothing written\n", err=True)
        return OK
    try:
        written = client.rollback(path, revision)
    except EtcdUnsupported as exc:
        raise needs_v3("rollback") from exc
    except EtcdCompacted as exc:
        raise compacted(client, path, revision, exc) from exc
    out(f"{written}\n")
    return OK
