"""``link-etcd``: the command line for trees in etcd (``python -m link.etcd`` too).

Commands: ``get``, ``ls``, ``put``, ``rm``, ``load``, ``dump``, ``diff``,
``watch``, ``history``, ``rollback``, ``config``, ``demo``, ``completion``; see
``docs/cli.md``.  Built with click; PyYAML and tomli-w are used when a command
needs them.  All of them come with the ``cli`` extra: ``pip install
'link.etcd[cli]'``.

Every read and write is a call of the library (:class:`EtcdMiddleware`); the
command line adds parsing, output and the comparisons shown to people.

Modules: :mod:`.app` (the group, error handling, output), :mod:`.connection`
(options, settings and their sources, the password), :mod:`.errors` (exit
statuses), :mod:`.formats` (JSON, YAML, TOML), :mod:`.trees` (compare, merge,
list), :mod:`.commands`, :mod:`.transfer` (load, dump, diff), :mod:`.revisions`
(history, rollback), :mod:`.demo`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn


def main(argv: Sequence[str] | None = None, prog_name: str | None = None) -> NoReturn:
    """Run ``link-etcd`` and end the process with its status (the console script).

    :param argv: the arguments; default ``sys.argv[1:]``.
    :param prog_name: the name shown in help; default ``link-etcd``.
    """
    try:
        import click  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "link-etcd: error: the command line needs click: pip install 'link.etcd[cli]'\n"
        )
        sys.exit(2)
    status = _load().main(args=argv, prog_name=prog_name, standalone_mode=False)
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # the reader went away after our last write
        from .app import silence_stdout

        silence_stdout()  # else the interpreter's own final flush complains
        status = status or 141
    sys.exit(status)


def _load() -> Any:
    """The click group with every command registered."""
    from . import commands, demo, revisions, transfer  # noqa: F401 - they register the commands
    from .app import cli

    return cli


def __getattr__(name: str) -> Any:
    if name == "cli":  # link.etcd.cli.cli: the click group (imports click)
        return _load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["cli", "main"]
