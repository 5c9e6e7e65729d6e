"""link.etcd for asyncio: :class:`AsyncEtcdMiddleware`, the same trees, settings,
errors and guarantees as :class:`link.etcd.EtcdMiddleware`, with coroutines and
async iterators, over ``grpc.aio`` or httpx (etcd's JSON gateway).

It runs the v3 engine's plans (:mod:`link.etcd.backends.v3.engine`) with an
async driver (:mod:`.driver`); the v2 API stays sync-only.  See
``docs/asyncio.md``.

- :mod:`.client`: :class:`AsyncEtcdMiddleware`
- :mod:`.driver`: :func:`~.driver.drive`, the async transports' protocol
- :mod:`.grpc`, :mod:`.gateway`: the transports
- :mod:`.watch`: :class:`AsyncWatch`, the watch over either transport
- :mod:`.lease`: :class:`AsyncLease`, kept alive by a task
"""

import contextlib

# the transports, and the modules they load on first use, are imported now rather
# than inside the event loop (the gateway's httpx stack: about 0.1 s of imports)
from . import grpc  # noqa: F401
from .client import AsyncEtcdMiddleware
from .lease import AsyncLease
from .watch import AsyncWatch

with contextlib.suppress(ImportError):  # httpx is optional (link.etcd[aio])
    from . import gateway  # noqa: F401

__all__ = ["AsyncEtcdMiddleware", "AsyncLease", "AsyncWatch"]
