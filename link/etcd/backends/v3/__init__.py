"""The etcd v3 backend: one tree engine, two transports.

- :mod:`.protocol`: typed requests and answers, the gRPC-code → exception table (no I/O)
- :mod:`.engine`: read, replace and delete plans as generators (no I/O)
- :mod:`.backend`: :class:`V3Backend`, the sync driver of those plans
- :mod:`.transport`: what a transport offers, and the endpoint failover both share
- :mod:`.grpc`: native gRPC (grpcio) with :mod:`.messages` (etcd's protobuf
  messages from ``etcd_v3.proto``, in a private descriptor pool)
- :mod:`.gateway`: etcd's JSON gateway over HTTP (requests, msgspec)
- :mod:`.watch`: the watch stream over either transport
"""

from .backend import V3Backend, drive, open_transport
from .watch import V3Watch

__all__ = ["V3Backend", "V3Watch", "drive", "open_transport"]
