"""Where ``link-etcd`` connects: connection options, resolved settings with the
source of each, the password.

Settings are resolved exactly as the library resolves them
(:func:`link.etcd.settings.load_settings`: ``middleware.conf`` files <
``LINK_ETCD_*`` variables < an ``etcd://`` URI < explicit values), with the
command-line options as the explicit values.  :func:`resolve` also says which
file, variable or option set each setting (for ``link-etcd config``).

The password never comes from an argument (it would show in ``ps``): it comes
from ``LINK_ETCD_PASSWORD`` (or a configuration file or ``LINK_ETCD_URI`` that
set the same user), else from a prompt on the terminal.  ``--user`` takes a
name only, and ``--uri`` may not hold a password.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from ..middleware import EtcdMiddleware
from ..settings import (
    ENV_PREFIX,
    ENV_URI,
    FIELD_NAMES,
    EtcdSettings,
    conf_search_path,
    load_settings,
    parse_uri,
    read_conf_file,
    read_environ,
)
from .errors import CONNECTION, CliError

F = TypeVar("F", bound=Callable[..., Any])

#: The environment variable the password is read from.
PASSWORD_ENV = ENV_PREFIX + "PASSWORD"


@dataclass
class State:
    """What one run of ``link-etcd`` carries from option to option (click's ``ctx.obj``).

    :attr options: setting name -> value, from the connection options given.
    :attr flags: setting name -> the option that set it (``'--endpoints'``).
    :attr uri: the ``--uri`` given, if any.
    :attr debug: ``--debug``: show tracebacks.
    :attr secrets: strings never to show (the password once known).
    """

    options: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    uri: str | None = None
    debug: bool = False
    secrets: list[str] = field(default_factory=list)


def state_of(ctx: click.Context) -> State:
    """The :class:`State` of this run (a fresh one when there is none, as in completion)."""
    state = ctx.find_object(State)
    if state is None:
        state = ctx.ensure_object(State)
    return state


# -- options ------------------------------------------------------------------


def _store(name: str, flag: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        state = state_of(ctx)
        state.options[name] = value
        state.flags[name] = flag

    return callback


def _store_user(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    if ":" in value:
        raise click.BadParameter(
            "give the user name only: the password comes from $LINK_ETCD_PASSWORD or a "
            "prompt, never from an argument (arguments show in ps)",
            ctx,
            param,
        )
    _store("username", "--user")(ctx, param, value)


def _store_uri(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        parsed = parse_uri(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if "password" in parsed:
        raise click.BadParameter(
            "the URI holds a password, which would show in ps: drop it and set "
            "$LINK_ETCD_PASSWORD (or put the whole URI in $LINK_ETCD_URI)",
            ctx,
            param,
        )
    state_of(ctx).uri = value


def _store_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        state_of(ctx).debug = True


_FILE = click.Path(exists=True, dir_okay=False, readable=True)


def connection_options(*, hidden: bool = False) -> Callable[[F], F]:
    """Decorator: the connection options (and ``--debug``) of every command.

    They may be given before the command (``link-etcd --endpoints h get /a``) or
    after it (``link-etcd get /a --endpoints h``); after wins.  Their values go
    to the run's :class:`State`, not to the command's arguments.

    :param hidden: leave them out of the command's ``--help`` (they are listed
        once, in ``link-etcd --help``).
    """
    specs: list[tuple[str, str, Any, str]] = [
        (
            "--endpoints",
            "endpoints",
            str,
            "etcd endpoints, comma-separated: host[:port] or http(s)://host[:port]",
        ),
        ("--api", "api", click.Choice(["v3", "v2"]), "etcd API (default v3)"),
        (
            "--transport",
            "transport",
            click.Choice(["grpc", "gateway"]),
            "v3 transport: native gRPC (default) or the HTTP/JSON gateway",
        ),
        ("--prefix", "prefix", str, "root key prefix: paths are below it (default /)"),
        ("--ca-cert", "ca_cert", _FILE, "CA bundle (PEM) that signed the server certificate"),
        ("--cert", "cert", _FILE, "client certificate (PEM)"),
        ("--cert-key", "cert_key", _FILE, "client private key (PEM)"),
        (
            "--timeout",
            "read_timeout",
            click.FloatRange(min=0, min_open=True),
            "seconds to wait for each endpoint (default 5)",
        ),
    ]

    def decorate(function: F) -> F:
        options = [
            click.option(
                flag,
                type=kind,
                help=text,
                expose_value=False,
                hidden=hidden,
                callback=_store(name, flag),
            )
            for flag, name, kind, text in specs
        ]
        options += [
            click.option(
                "--user",
                metavar="NAME",
                expose_value=False,
                hidden=hidden,
                callback=_store_user,
                help=f"etcd user; the password comes from ${PASSWORD_ENV} or a prompt",
            ),
            click.option(
                "--uri",
                metavar="URI",
                expose_value=False,
                hidden=hidden,
                callback=_store_uri,
                help="etcd://host[:port][,host2...][/prefix][?setting=value...] (no password)",
            ),
            click.option(
                "--debug",
                is_flag=True,
                expose_value=False,
                hidden=hidden,
                callback=_store_debug,
                help="show the traceback of an error",
            ),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


# -- settings -----------------------------------------------------------------


@dataclass
class Resolved:
    """Settings and where each came from.

    :attr settings: the settings, as the library resolves them.
    :attr sources: setting name -> ``'default'``, ``'file /etc/...'``,
        ``'environment variable LINK_ETCD_X'``, ``'option --x'``, ...
    :attr files: the ``middleware.conf`` files read, weakest first.
    """

    settings: EtcdSettings
    sources: dict[str, str]
    files: list[Path]


def resolve(state: State, environ: Mapping[str, str] | None = None) -> Resolved:
    """The settings of this run, and the source of each.

    :param state: the options given.
    :param environ: the environment; None means ``os.environ``.
    :raises EtcdSettingsError: a bad file, variable, URI or option (status 2).
    """
    env = os.environ if environ is None else environ
    files = conf_search_path(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def layer(found: Mapping[str, Any], source: Callable[[str], str]) -> None:
        for name, value in found.items():
            values[name] = value
            sources[name] = source(name)

    for file in files:
        layer(read_conf_file(file), lambda name, f=file: f"file {f}")  # type: ignore[misc]
    layer(read_environ(env), lambda name: f"environment variable {ENV_PREFIX}{name.upper()}")
    if state.uri is not None:
        layer(parse_uri(state.uri), lambda name: "option --uri")
    elif env.get(ENV_URI):
        layer(parse_uri(env[ENV_URI]), lambda name: f"environment variable {ENV_URI}")

    overrides = dict(state.options)
    user = overrides.get("username")
    if user is not None and not env.get(PASSWORD_ENV) and values.get("username") != user:
        overrides["password"] = None  # the configured password is another user's
        sources.pop("password", None)
    elif user is not None and env.get(PASSWORD_ENV):
        overrides["password"] = env[PASSWORD_ENV]
        sources["password"] = f"environment variable {PASSWORD_ENV}"
    for name in overrides:
        if name in state.flags:
            sources[name] = f"option {state.flags[name]}"
    layered_protocol = values.get("protocol", EtcdSettings.protocol)
    settings = load_settings(uri=state.uri, conf_files=files, environ=env, **overrides)
    if settings.protocol != layered_protocol:
        sources["protocol"] = "the scheme of the endpoints"
    return Resolved(settings, {name: sources.get(name, "default") for name in FIELD_NAMES}, files)


def _stdin_is_terminal() -> bool:
    try:
        return bool(sys.stdin.isatty())
    except (ValueError, AttributeError):  # closed or missing
        return False


def connect(ctx: click.Context) -> EtcdMiddleware:
    """The middleware for this run: settings resolved, password asked for if needed.

    The middleware is closed when the command ends.

    :raises EtcdSettingsError: bad settings (status 2).
    :raises CliError: ``--user`` without a password and no terminal to ask on
        (status 3).
    """
    state = state_of(ctx)
    settings = resolve(state).settings
    if settings.username and settings.password is None:
        if _stdin_is_terminal():
            password = click.prompt(
                f"Password of etcd user {settings.username}", hide_input=True, err=True
            )
            state.secrets.append(password)
            settings = settings.replace(password=password)
        elif "username" in state.options:
            raise CliError(
                f"etcd user {settings.username!r} needs a password: set ${PASSWORD_ENV}, "
                "or run on a terminal to be asked for it",
                CONNECTION,
            )
    if settings.password:
        state.secrets.append(settings.password)
    client = EtcdMiddleware(settings)
    ctx.find_root().call_on_close(client.close)
    return client
