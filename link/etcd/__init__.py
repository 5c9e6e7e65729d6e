"""link.etcd: an etcd cluster as a Python dictionary of trees.

>>> from link.etcd import EtcdMiddleware
>>> client = EtcdMiddleware(endpoints=["127.0.0.1:2379"])   # doctest: +SKIP
>>> client["/app"] = {"db": {"host": "h", "port": 5432}, "workers": ["a", "b"]}  # doctest: +SKIP
>>> client["/app/db/port"]                                   # doctest: +SKIP
5432
"""

from .errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdCompareFailed,
    EtcdConnectionFailed,
    EtcdError,
    EtcdInvalidTree,
    EtcdKeyNotFound,
    EtcdLeaseNotFound,
    EtcdLockLost,
    EtcdLockTimeout,
    EtcdPartialWrite,
    EtcdPermissionDenied,
    EtcdSettingsError,
    EtcdTimeout,
    EtcdTxnTooLarge,
    EtcdUnsupported,
)
from .middleware import EtcdMiddleware
from .settings import EtcdSettings, load_settings

__version__ = "1.0.0.dev0"

__all__ = [
    "EtcdAuthError",
    "EtcdCompacted",
    "EtcdCompareFailed",
    "EtcdConnectionFailed",
    "EtcdError",
    "EtcdInvalidTree",
    "EtcdKeyNotFound",
    "EtcdLeaseNotFound",
    "EtcdLockLost",
    "EtcdLockTimeout",
    "EtcdMiddleware",
    "EtcdPartialWrite",
    "EtcdPermissionDenied",
    "EtcdSettings",
    "EtcdSettingsError",
    "EtcdTimeout",
    "EtcdTxnTooLarge",
    "EtcdUnsupported",
    "load_settings",
]
