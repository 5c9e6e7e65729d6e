"""Backends: one package per etcd API (``v3``: gRPC or the JSON gateway; ``v2``: python-etcd).

:func:`open_backend` picks one from the settings' ``api``.
"""

from __future__ import annotations

from ..settings import EtcdSettings
from .base import Backend, Event, KeyValue, Snapshot


def open_backend(settings: EtcdSettings) -> Backend:
    """Create the backend for ``settings.api`` (``'v3'`` or ``'v2'``); no request is sent."""
    if settings.api == "v2":
        from .v2 import V2Backend

        return V2Backend(settings)
    from .v3 import V3Backend

    return V3Backend(settings)


__all__ = ["Backend", "Event", "KeyValue", "Snapshot", "open_backend"]
