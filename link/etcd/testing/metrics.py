"""Request counters from an etcd server's Prometheus ``/metrics`` endpoint.

v3: the KV gRPC calls the server handled (``grpc_server_handled_total`` for
``Range``, ``Put``, ``DeleteRange`` and ``Txn`` of ``etcdserverpb.KV``; the
JSON gateway and etcdctl both end up there).  v2: every HTTP request of the v2
keys API (``etcd_http_received_total``, by HTTP method).

Used by the demo (``python -m link.etcd.demo``), the benchmarks and the tests
that count the requests an operation costs.
"""

from __future__ import annotations

import re
import urllib.request

__all__ = ["difference", "request_count", "request_counts"]

_V3_KV = re.compile(
    r'^grpc_server_handled_total\{[^}]*grpc_method="(Range|Txn|Put|DeleteRange)"'
    r'[^}]*grpc_service="etcdserverpb.KV"[^}]*\} (\d+)',
    re.M,
)
_V2_HTTP = re.compile(r'^etcd_http_received_total\{[^}]*method="(\w+)"[^}]*\} (\d+)', re.M)


def request_counts(endpoint: str, api: str, timeout: float = 10.0) -> dict[str, int] | None:
    """Requests the server has handled so far, per method.

    One plain-HTTP ``GET {endpoint}/metrics`` (no TLS client certificate).

    :param endpoint: client URL, e.g. ``"http://127.0.0.1:2379"``.
    :param api: ``"v3"`` (KV gRPC calls by method: ``{"Txn": 12, "Range": 3}``)
        or ``"v2"`` (HTTP requests by method: ``{"PUT": 9, "GET": 2}``).
    :param timeout: seconds for the HTTP request.
    :returns: the counts (methods never called are absent), or ``None`` when
        the endpoint does not answer (refused, timeout, no ``/metrics``).
    """
    try:
        with urllib.request.urlopen(f"{endpoint}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return None
    counts: dict[str, int] = {}
    for match in (_V3_KV if api == "v3" else _V2_HTTP).finditer(text):
        counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2))
    return counts


def request_count(endpoint: str, api: str, timeout: float = 10.0) -> int | None:
    """The total of :func:`request_counts` (all methods), or ``None`` when the
    endpoint does not answer."""
    counts = request_counts(endpoint, api, timeout)
    return None if counts is None else sum(counts.values())


def difference(after: dict[str, int] | None, before: dict[str, int] | None) -> dict[str, int]:
    """``after - before`` per method, dropping zeros (empty when either is ``None``)."""
    if after is None or before is None:
        return {}
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
