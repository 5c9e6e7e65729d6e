"""Recipes: patterns built on etcd's primitives, each taking the client as an argument.

- :class:`~link.etcd.recipes.lease.Lease` (:mod:`.lease`): an etcd v3 lease,
  optionally kept alive in the background (``client.lease(ttl)``).
- :class:`~link.etcd.recipes.lock.Lock` (:mod:`.lock`): a distributed lock with a
  fencing token (``client.lock(name)``), the key layout of ``etcdctl lock``.
- :class:`~link.etcd.recipes.election.Election` (:mod:`.election`): leader
  election (``client.election(name)``), the key layout of ``etcdctl elect``.
"""

from .election import Election, Leader
from .lease import Lease
from .lock import Lock

__all__ = ["Election", "Leader", "Lease", "Lock"]
