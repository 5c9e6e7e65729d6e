"""Recipes: patterns built on etcd's primitives, each taking the client as an argument.

- :class:`~link.etcd.recipes.lease.Lease` (:mod:`.lease`): an etcd v3 lease,
  optionally kept alive in the background (``client.lease(ttl)``).
"""

from .lease import Lease

__all__ = ["Lease"]
