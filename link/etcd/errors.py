"""Exceptions raised by link.etcd.

Hierarchy::

    EtcdError                      root; carries ``endpoints`` and ``key`` where known
    ├── EtcdKeyNotFound            also a KeyError: nothing stored at the path
    ├── EtcdInvalidTree            also a ValueError: bad input, raised before any write
    │   └── EtcdTxnTooLarge        a write that must be one txn does not fit in one
    ├── EtcdSettingsError          also a ValueError: bad setting (file, key and value named)
    ├── EtcdConnectionFailed       no endpoint answered (every endpoint tried is named)
    │   └── EtcdTimeout            an endpoint did not answer within ``read_timeout``
    ├── EtcdAuthError              credentials rejected or permission denied
    │   └── EtcdPermissionDenied   authenticated, but the user may not touch the key
    ├── EtcdCompareFailed          a txn compare (v3) or a concurrent change kept failing
    ├── EtcdCompacted              the revision asked for was compacted away (v3)
    ├── EtcdLeaseNotFound          the lease expired or was revoked (v3)
    ├── EtcdUnsupported            the API in use cannot do this (v2: leases, past revisions)
    ├── EtcdPartialWrite           a multi-request write stopped part way (cause chained)
    ├── EtcdLockLost               a lock or leadership is no longer held (guarded write refused)
    └── EtcdLockTimeout            a lock or leadership was not obtained in time

Only :class:`EtcdKeyNotFound` is a :class:`KeyError`: a dead network never looks
like a missing key.  Backends translate their client library's exceptions into
these classes in one place each, always chaining the original with ``from``.
"""

from __future__ import annotations

from collections.abc import Sequence


class EtcdError(Exception):
    """Root of every exception raised by link.etcd.

    :param message: human readable text.
    :param endpoints: the endpoints (``scheme://host:port``) involved, if known.
    :param key: the etcd key or middleware path involved, if known.
    """

    def __init__(
        self, message: str, *, endpoints: Sequence[str] = (), key: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoints: tuple[str, ...] = tuple(endpoints)
        self.key = key

    def __str__(self) -> str:
        text = self.message
        if self.key is not None and self.key not in text:
            text = f"{text} (key {self.key!r})"
        if self.endpoints:
            text = f"{text} [endpoints: {', '.join(self.endpoints)}]"
        return text


class EtcdKeyNotFound(EtcdError, KeyError):
    """Nothing is stored at the path: no leaf and no directory."""

    def __str__(self) -> str:  # KeyError.__str__ would repr() the message
        return EtcdError.__str__(self)


class EtcdInvalidTree(EtcdError, ValueError):
    """The value or path cannot be stored; raised before anything is written."""


class EtcdTxnTooLarge(EtcdInvalidTree):
    """A write that must be one txn (a conditional write, ``update``) needs more
    operations or bytes than etcd takes in one (``max_txn_ops``,
    ``max_request_bytes``); raised before anything is written."""


class EtcdSettingsError(EtcdError, ValueError):
    """A setting has a bad name, type or value."""


class EtcdConnectionFailed(EtcdError):
    """No endpoint of the cluster could be reached."""


class EtcdTimeout(EtcdConnectionFailed):
    """An endpoint did not answer within the configured ``read_timeout``."""


class EtcdAuthError(EtcdError):
    """The cluster rejected the credentials (or requires some and none were given)."""


class EtcdPermissionDenied(EtcdAuthError):
    """The authenticated user has no permission on the key."""


class EtcdCompareFailed(EtcdError):
    """A transaction compare failed: another writer changed the subtree meanwhile."""


class EtcdCompacted(EtcdError):
    """A read or watch asked for a revision older than etcd's last compaction.

    :attr compact_revision: the oldest revision still kept, when etcd said it.
    """

    def __init__(
        self,
        message: str,
        *,
        compact_revision: int | None = None,
        endpoints: Sequence[str] = (),
        key: str | None = None,
    ) -> None:
        super().__init__(message, endpoints=endpoints, key=key)
        self.compact_revision = compact_revision


class EtcdLeaseNotFound(EtcdError):
    """etcd does not know the lease a call named (v3 gRPC ``NOT_FOUND``): it expired
    or was revoked, so a write attached to it was not made and a keepalive cannot
    bring it back.  Grant a new lease."""


class EtcdUnsupported(EtcdError):
    """The etcd API in use (typically v2) has no way to do what was asked."""


class EtcdPartialWrite(EtcdError):
    """A write that needed several requests stopped after some of them were applied.

    :attr applied: number of requests (txns on v3, key writes on v2) applied.
    :attr total: number of requests the write needed.
    """

    def __init__(
        self,
        message: str,
        *,
        applied: int,
        total: int,
        endpoints: Sequence[str] = (),
        key: str | None = None,
    ) -> None:
        super().__init__(message, endpoints=endpoints, key=key)
        self.applied = applied
        self.total = total


class EtcdLockLost(EtcdError):
    """The lock (or leadership) is no longer held (key or lease gone); nothing was written."""


class EtcdLockTimeout(EtcdError):
    """The lock (or leadership) was not obtained within the timeout; the block did not run."""


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
    "EtcdPartialWrite",
    "EtcdPermissionDenied",
    "EtcdSettingsError",
    "EtcdTimeout",
    "EtcdTxnTooLarge",
    "EtcdUnsupported",
]
