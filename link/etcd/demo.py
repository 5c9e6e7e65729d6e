"""``python -m link.etcd.demo``: store a real document in etcd, read it back, compare.

The document is the JSON that ``pip inspect`` prints for the running
environment (nested dicts and lists, long text values, booleans): nobody here
wrote it.  It is stored under ``/demo`` with each API asked for, read back and
compared, and a summary is printed: keys stored, requests the server counted
(from its ``/metrics``), and the time of the write and of the read.

Without ``--endpoint`` (and without ``LINK_ETCD_ENDPOINTS``/``LINK_ETCD_HOST``/
``LINK_ETCD_URI`` in the environment) a throwaway etcd server is started with
:class:`link.etcd.testing.EtcdServer` and stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import codec
from .middleware import EtcdMiddleware
from .testing.metrics import request_count

_CONFIGURED = ("LINK_ETCD_ENDPOINTS", "LINK_ETCD_HOST", "LINK_ETCD_URI")


def pip_inspect() -> Any:
    """The JSON document ``python -m pip inspect`` prints for this interpreter."""
    output = subprocess.run(
        [sys.executable, "-m", "pip", "inspect"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    ).stdout
    return json.loads(output)


def leaf_count(document: Any) -> int:
    """Number of etcd keys ``document`` is stored as."""
    return len(codec.flatten(codec.encode(document), ""))


@contextlib.contextmanager
def _server(endpoint: str | None) -> Iterator[str | None]:
    if endpoint or any(os.environ.get(name) for name in _CONFIGURED):
        yield endpoint
        return
    from .testing import EtcdServer

    with EtcdServer(enable_v2=True) as server:
        print(f"started a throwaway etcd at {server.endpoint}")
        yield server.endpoint


def run_one(api: str, endpoint: str | None, document: Any, path: str) -> dict[str, Any]:
    """Write, read back and compare ``document`` at ``path``; return the measurements."""
    overrides: dict[str, Any] = {"api": api}
    if endpoint:
        overrides["endpoints"] = [endpoint]
    with EtcdMiddleware(**overrides) as client:
        return {"api": api, **measure(client, document, path)}


def measure(client: EtcdMiddleware, document: Any, path: str) -> dict[str, Any]:
    """Delete ``path``, write ``document`` there, read it back and compare.

    :returns: ``{"equal": bool, "write_s", "read_s": seconds, "write_requests",
        "read_requests": int or None}`` (requests counted from the server's
        ``/metrics``; None when it cannot be read).
    """
    api = client.settings.api
    url = client.settings.urls[0]
    with contextlib.suppress(KeyError):
        del client[path]
    before = request_count(url, api)
    started = time.perf_counter()
    client[path] = document
    write_s = time.perf_counter() - started
    middle = request_count(url, api)
    started = time.perf_counter()
    back = client[path]
    read_s = time.perf_counter() - started
    after = request_count(url, api)
    return {
        "equal": back == document,
        "write_s": write_s,
        "read_s": read_s,
        "write_requests": None if before is None or middle is None else middle - before,
        "read_requests": None if middle is None or after is None else after - middle,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when a read differs)."""
    parser = argparse.ArgumentParser(prog="python -m link.etcd.demo", description=__doc__)
    parser.add_argument("--endpoint", help="etcd client URL; default: start a throwaway server")
    parser.add_argument("--api", choices=["v3", "v2", "both"], default="both")
    parser.add_argument("--path", default="/demo")
    parser.add_argument("--document", help="a JSON file to store instead of `pip inspect`")
    args = parser.parse_args(argv)

    if args.document:
        with open(args.document, encoding="utf-8") as handle:
            document = json.load(handle)
    else:
        document = pip_inspect()
    print(f"document: {leaf_count(document)} keys once stored")
    apis = ["v3", "v2"] if args.api == "both" else [args.api]
    ok = True
    with _server(args.endpoint) as endpoint:
        for api in apis:
            result = run_one(api, endpoint, document, args.path)
            ok = ok and result["equal"]
            print(
                f"{api}: write {result['write_s'] * 1000:.0f} ms "
                f"({result['write_requests']} requests), "
                f"read {result['read_s'] * 1000:.0f} ms ({result['read_requests']} requests), "
                f"read back {'equal' if result['equal'] else 'DIFFERENT'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
