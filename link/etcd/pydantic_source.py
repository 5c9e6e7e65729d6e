"""``link.etcd.pydantic_source``: the pydantic-settings source, kept at its first
import path.

The code lives in :mod:`link.etcd.adapters.pydantic`; this module re-exports it.
"""

from .adapters.live import InvalidConfiguration
from .adapters.pydantic import EtcdSettingsError, EtcdSettingsSource

__all__ = ["EtcdSettingsError", "EtcdSettingsSource", "InvalidConfiguration"]
