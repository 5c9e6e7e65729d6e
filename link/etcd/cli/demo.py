"""``link-etcd demo``: ``make demo`` from the command line, on any cluster.

Like ``python -m link.etcd.demo`` it stores the JSON of ``pip inspect`` (or
``--document``), reads it back and compares, printing keys, requests and
times.  Unlike it, it honours every setting source (``middleware.conf``,
``LINK_ETCD_*``, options): when those name a cluster, the demo says what it
will delete and write there, and asks first (``--yes`` on a script).  When
nothing names a cluster, it starts a throwaway etcd server.
"""

from __future__ import annotations

from typing import Any

import click

from ..demo import leaf_count, measure, pip_inspect
from ..middleware import EtcdMiddleware
from ..settings import EtcdSettings
from .app import cli, is_terminal, out
from .connection import connect, connection_options, resolve, state_of
from .errors import FAILED, OK, USAGE, CliError
from .transfer import read_document

#: Settings that name a cluster: set anywhere, the demo uses that cluster.
CLUSTER_SETTINGS = ("host", "port", "endpoints", "srv_domain")


def _line(api: str, result: dict[str, Any]) -> str:
    def requests(count: int | None) -> str:
        return "?" if count is None else str(count)

    return (
        f"{api}: write {result['write_s'] * 1000:.0f} ms "
        f"({requests(result['write_requests'])} requests), "
        f"read {result['read_s'] * 1000:.0f} ms ({requests(result['read_requests'])} requests), "
        f"read back {'equal' if result['equal'] else 'DIFFERENT'}\n"
    )


@cli.command(short_help="Store a real document, read it back, compare.")
@click.option("--path", default="/demo", show_default=True, help="where to store the document")
@click.option(
    "--document",
    type=click.Path(exists=True, dir_okay=False),
    help="a JSON or YAML file to store instead of `pip inspect`'s JSON",
)
@click.option("-y", "--yes", is_flag=True, help="write to a configured cluster without asking")
@connection_options(hidden=True)
@click.pass_context
def demo(ctx: click.Context, path: str, document: str | None, yes: bool) -> int:
    """Store a real document, read it back, compare; print keys, requests, times.

    Without a configured cluster (no endpoints or host in middleware.conf,
    LINK_ETCD_* or the options) a throwaway etcd is started and both APIs are
    shown.  On a configured cluster the API of the settings is used, and the
    demo says what it will delete and write, and asks first (--yes to skip).
    Exit status 1 when a read differs.
    """
    resolved = resolve(state_of(ctx))
    tree = read_document(document, None) if document else pip_inspect()
    out(f"document: {leaf_count(tree)} keys once stored\n")
    configured = any(resolved.sources[name] != "default" for name in CLUSTER_SETTINGS)
    if configured:
        client = connect(ctx)
        settings = client.settings
        out(
            f"{', '.join(settings.urls)} is a configured cluster, not a throwaway server: "
            f"the demo will delete everything at {path} (etcd key {client.key(path)}, "
            f"{settings.api} API) and write {leaf_count(tree)} keys there, "
            "which it leaves for you to look at.\n",
            err=True,
        )
        if not yes:
            if not is_terminal("stdin"):
                raise CliError("not on a terminal: give --yes to go on; nothing was written", USAGE)
            if not click.confirm("Go on?", default=False, err=True):
                raise CliError("cancelled; nothing was written", FAILED)
        result = measure(client, tree, path)
        out(_line(settings.api, result))
        return OK if result["equal"] else FAILED
    from ..testing import EtcdServer

    try:
        server = EtcdServer(enable_v2=True)
    except FileNotFoundError as exc:
        raise CliError(str(exc), USAGE) from exc
    apis = [resolved.settings.api] if resolved.sources["api"] != "default" else ["v3", "v2"]
    ok = True
    with server:
        out(f"started a throwaway etcd at {server.endpoint}\n")
        for api in apis:
            settings = EtcdSettings(
                endpoints=(server.endpoint,), api=api, transport=resolved.settings.transport
            )
            with EtcdMiddleware(settings) as client:
                result = measure(client, tree, path)
            ok = ok and result["equal"]
            out(_line(api, result))
    return OK if ok else FAILED
