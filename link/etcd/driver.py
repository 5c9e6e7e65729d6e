"""``link.etcd.driver``: the b3j0f.conf driver, kept at its first import path.

The code lives in :mod:`link.etcd.adapters.b3j0f`; this module re-exports it, so
``from link.etcd.driver import EtcdConfDriver`` (and a b3j0f configuration that
names the driver ``link.etcd.driver.EtcdConfDriver``) keeps working.
"""

from .adapters.b3j0f import EtcdConfDriver, InvalidConfiguration, conf_path

__all__ = ["EtcdConfDriver", "InvalidConfiguration", "conf_path"]
