"""The ``LINK_ETCD_<FIELD>`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .model import FIELD_NAMES, coerce

#: Prefix of the environment variables: ``LINK_ETCD_<FIELD>`` upper-case.
ENV_PREFIX = "LINK_ETCD_"
#: Environment variable holding an ``etcd://`` URI.
ENV_URI = "LINK_ETCD_URI"


def variable(name: str) -> str:
    """The environment variable of a field: ``read_timeout`` -> ``LINK_ETCD_READ_TIMEOUT``."""
    return ENV_PREFIX + name.upper()


def read_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read the ``LINK_ETCD_<FIELD>`` variables (``LINK_ETCD_URI`` excluded).

    Other ``LINK_ETCD_*`` variables are ignored.

    :param environ: the environment; None means ``os.environ``.
    :return: field name -> coerced value, only for the variables set.
    :raises EtcdSettingsError: a bad value (the variable and value are named).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in FIELD_NAMES:
        name_of = variable(name)
        if name_of in env:
            values[name] = coerce(name, env[name_of], f"environment variable {name_of}")
    return values
