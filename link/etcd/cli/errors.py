"""Exit statuses of ``link-etcd`` and the one place exceptions become them.

=====  ==================================================================
 0     success
 1     a missing path; ``diff`` found differences; any other failure of
       the operation itself (a concurrent change refused by ``load``, a
       partial write, an unexpected etcd error)
 2     bad usage or input (options, paths, documents, settings, a revision
       that was compacted or is in the future, what the API in use cannot
       do), detected before anything is written
 3     connection, authentication or permission errors
 130   interrupted (Ctrl-C), 141 output pipe closed: what a shell reports
       for those signals
=====  ==================================================================

Every error is reported as one line on stderr, ``link-etcd: error: ...``;
``--debug`` prints the traceback first.  Known secrets (the password of the
session) are replaced by ``***`` in that line, whatever produced it.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import IO

from ..errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdSettingsError,
    EtcdUnsupported,
)

OK = 0
#: A missing path, differences found, or another failure of the operation.
FAILED = 1
#: Bad usage or input.
USAGE = 2
#: Connection, authentication or permission error.
CONNECTION = 3
#: Ctrl-C (128 + SIGINT).
INTERRUPTED = 130
#: The reader of our output went away (128 + SIGPIPE).
PIPE_CLOSED = 141

#: The install hint of the ``cli`` extra.
INSTALL_HINT = "pip install 'link.etcd[cli]'"


class CliError(Exception):
    """An error the command line reports as one line, with an exit status.

    :param message: the line (without the ``link-etcd: error:`` prefix).
    :param status: the exit status (one of the constants of this module).
    """

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class MissingDependency(CliError):
    """A command needs a package of the ``cli`` extra that is not installed."""

    def __init__(self, package: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {package}: {INSTALL_HINT}", USAGE)


class PipeClosed(Exception):
    """stdout was closed by its reader (``link-etcd dump /app | head``)."""


def status_of(exc: BaseException) -> int:
    """The exit status for an exception (see the module docstring).

    :param exc: anything raised by a command.
    :returns: 1, 2 or 3 (130 for an interrupt, 141 for a closed pipe).
    """
    import click

    if isinstance(exc, CliError):
        return exc.status
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, PipeClosed):
        return PIPE_CLOSED
    if isinstance(exc, click.exceptions.UsageError | click.exceptions.FileError):
        return USAGE
    if isinstance(exc, EtcdKeyNotFound):
        return FAILED
    if isinstance(exc, EtcdInvalidTree | EtcdSettingsError | EtcdCompacted | EtcdUnsupported):
        return USAGE
    if isinstance(exc, EtcdConnectionFailed | EtcdAuthError):
        return CONNECTION
    return FAILED


def message_of(exc: BaseException) -> str:
    """The one-line text for an exception (newlines folded into spaces).

    :param exc: anything raised by a command.
    :returns: the text, without the ``link-etcd: error:`` prefix.
    """
    import click

    if isinstance(exc, click.exceptions.UsageError):
        text = exc.format_message()
        if exc.ctx is not None:
            text += f" (see '{exc.ctx.command_path} --help')"
    elif isinstance(exc, click.exceptions.ClickException):
        text = exc.format_message()
    elif isinstance(exc, CliError):
        text = exc.message
    elif isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        text = "interrupted"
    elif isinstance(exc, EtcdError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror}"
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
    return " ".join(text.split())


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``.

    :param secrets: strings never to show (empty ones are ignored).
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def report(
    exc: BaseException, *, debug: bool, secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> int:
    """Write the error line (and with ``debug`` the traceback) and return the exit status.

    :param exc: the exception.
    :param debug: print the traceback before the line.
    :param secrets: strings to mask in everything written.
    :param stream: where to write; default ``sys.stderr``.
    :returns: the exit status, see :func:`status_of`.
    """
    out = sys.stderr if stream is None else stream
    secrets = list(secrets)
    status = status_of(exc)
    if status == PIPE_CLOSED:
        return status
    if debug:
        text = "".join(traceback.format_exception(exc))
        out.write(scrub(text, secrets))
    out.write(f"link-etcd: error: {scrub(message_of(exc), secrets)}\n")
    out.flush()
    return status
