"""The ``link-etcd`` command group, its error handling and output helpers.

:class:`LinkEtcdGroup` runs click with ``standalone_mode=False`` and turns
every exception into one line on stderr and an exit status
(:func:`link.etcd.cli.errors.report`), for the console script, ``python -m
link.etcd`` and click's test runner alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click
from click.shell_completion import CompletionItem

from .. import __version__
from ..middleware import EtcdMiddleware
from .connection import State, connection_options, resolve, state_of
from .errors import PipeClosed, report

#: click >= 8.2 raises this for a bare ``link-etcd``; older ones print the help.
_NO_ARGS: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LinkEtcdGroup(click.Group):
    """A click group whose ``main`` reports errors as one line and exits with
    the statuses of :mod:`link.etcd.cli.errors`.

    :attr state: the :class:`State` of the current (or last) run.
    """

    state: State | None = None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        """Run the command line; exit (or, with ``standalone_mode=False``, return)
        with its status.

        :param args: the arguments; default ``sys.argv[1:]``.
        :param prog_name: the name shown in help; default ``link-etcd``.
        """
        state = self.state = State()
        try:
            result = super().main(
                args,
                prog_name or "link-etcd",
                complete_var or "_LINK_ETCD_COMPLETE",
                standalone_mode=False,
                obj=state,
                **extra,
            )
            status = result if isinstance(result, int) else 0
        except _NO_ARGS as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            status = 2
        except Exception as exc:  # noqa: BLE001 - every error becomes one line and a status
            status = report(exc, debug=state.debug, secrets=state.secrets)
            if isinstance(exc, PipeClosed):
                silence_stdout()
        except KeyboardInterrupt as exc:
            status = report(exc, debug=state.debug, secrets=state.secrets)
        if standalone_mode:
            sys.exit(status)
        return status


def silence_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so that
    the interpreter's final flush does not complain."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


EPILOG = """\b
Connection options may also follow the command:
  link-etcd get /app --endpoints etcd1:2379
Exit status: 0 success; 1 a missing path, differences (diff) or another
failure; 2 bad usage or input; 3 connection, authentication or permission.
Documentation: docs/cli.md."""


@click.group(
    cls=LinkEtcdGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.version_option(__version__, "-V", "--version", prog_name="link-etcd")
@connection_options()
def cli() -> None:
    """Trees in etcd from the command line: get, ls, put, rm, load, dump, diff,
    watch, history, rollback, with exact types (42 stays an int, "42" a string, [] an empty list).

    Settings come from middleware.conf files, LINK_ETCD_* variables and
    LINK_ETCD_URI like the library's; the options below override them
    (`link-etcd config` shows the result and where each setting came from).
    """


# -- output -------------------------------------------------------------------


def out(text: str, *, err: bool = False, color: bool | None = None) -> None:
    """Write ``text`` as it is (no newline added) to stdout, or stderr with ``err``.

    :param color: keep ANSI styles (True), drop them (False), or keep them only
        on a terminal (None).
    :raises PipeClosed: the reader of stdout went away.
    """
    try:
        click.echo(text, nl=False, err=err, color=color)
    except BrokenPipeError as exc:
        raise PipeClosed() from exc


def is_terminal(stream: str) -> bool:
    """True when ``'stdout'`` or ``'stderr'`` (or ``'stdin'``) is a terminal."""
    try:
        return bool(getattr(sys, stream).isatty())
    except (ValueError, AttributeError):  # closed, or replaced by something odd
        return False


# -- shell completion of paths ------------------------------------------------


def complete_path(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of a PATH argument: the children of the path typed so far,
    read from etcd (1 second per endpoint; nothing when etcd does not answer or
    a password would be needed)."""
    try:
        settings = resolve(state_of(ctx)).settings.replace(read_timeout=1.0)
        if settings.username and settings.password is None:
            return []
        parent = incomplete.rpartition("/")[0]
        with EtcdMiddleware(settings) as client:
            names = client.children(parent or "/")
    except Exception:  # noqa: BLE001 - completion offers nothing, never a traceback
        return []
    paths = (f"{parent}/{name}" for name in names)
    return [CompletionItem(path) for path in paths if path.startswith(incomplete)]
