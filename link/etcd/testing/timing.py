"""Shorter timing constants for tests: :func:`set_watch_idle`."""

from __future__ import annotations

from typing import Any

__all__ = ["set_watch_idle"]


def set_watch_idle(client: Any, seconds: float) -> float:
    """Set how long the watches ``client`` opens from now on may stay silent
    before their member is checked (default
    :data:`~link.etcd.backends.base.WATCH_IDLE_SECONDS`, 10 s): the
    ``watch_idle_seconds`` of its v3 transport (gRPC or gateway) or of its v2
    backend.  Watches already open keep theirs.

    A test that waits for the check (a member that hangs or is cut off) can
    then take seconds instead of tens of seconds.

    :param client: an :class:`~link.etcd.EtcdMiddleware` or an
        :class:`~link.etcd.aio.AsyncEtcdMiddleware`.
    :param seconds: the new idle time, in seconds (> 0).
    :returns: the previous value, in seconds.
    :raises ValueError: ``seconds`` is not positive.
    """
    if not seconds > 0:
        raise ValueError(f"watch idle time must be positive, not {seconds!r}")
    backend = getattr(client, "backend", None)  # the async client has its transport only
    holder = client.transport if backend is None else getattr(backend, "transport", backend)
    previous: float = holder.watch_idle_seconds
    holder.watch_idle_seconds = float(seconds)
    return previous
