"""load_settings: the layers merged key by key, each value's origin kept for messages."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from link.etcd.errors import EtcdSettingsError

from .environ import ENV_URI, read_environ, variable
from .files import CONF_SECTION, conf_search_path, read_conf_file
from .model import DEFAULTS, EtcdSettings, check_together, coerce, refuse_unknown
from .uri import mask_uri, parse_uri


def load_settings(
    *,
    uri: str | None = None,
    conf_files: Sequence[str | os.PathLike[str]] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> EtcdSettings:
    """Build settings from defaults, files, environment, a URI and arguments.

    Priority, lowest to highest, key by key: dataclass defaults < each file
    of ``conf_files`` in order < ``LINK_ETCD_<FIELD>`` variables < the URI
    (``uri`` if given, else ``$LINK_ETCD_URI``; an explicit ``uri`` replaces
    ``$LINK_ETCD_URI`` entirely, so credentials of one URI never travel to
    the hosts of another) < ``overrides``.

    A check across fields (``cert_key`` without ``cert``, ``password``
    without ``username``...) or of a TLS file that cannot be read names the
    layer the offending value came from (the file and key, the variable, the
    URI with its password masked, or the keyword argument).

    :param uri: an ``etcd://`` URI, see :func:`~link.etcd.settings.parse_uri`.
    :param conf_files: files to read, weakest first; every one must exist.
        None means :func:`~link.etcd.settings.conf_search_path` (``environ``);
        ``[]`` reads none.
    :param environ: the environment; None means ``os.environ``.
    :param overrides: field name -> value, coerced like the rest (None is
        only valid for optional fields).
    :return: the merged, validated settings.
    :raises EtcdSettingsError: an unknown keyword (the valid names are
        listed), an unreadable or bad file, a bad variable, URI or value, a
        TLS file that cannot be read, or fields that contradict each other.
    """
    refuse_unknown(overrides)
    env = os.environ if environ is None else environ
    files = conf_search_path(env) if conf_files is None else [Path(f) for f in conf_files]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def layer(found: Mapping[str, Any], origin: Any) -> None:
        for name, value in found.items():
            values[name] = value
            origins[name] = origin(name)

    for file in files:
        layer(read_conf_file(file), lambda name, file=file: f"{file}: [{CONF_SECTION}] {name}")
    layer(read_environ(env), lambda name: f"environment variable {variable(name)}")
    if uri is not None:
        layer(parse_uri(uri), lambda name: f"URI {mask_uri(uri)!r} ({name})")
    elif env.get(ENV_URI):
        try:
            found = parse_uri(env[ENV_URI])
        except EtcdSettingsError as exc:
            raise EtcdSettingsError(f"environment variable {ENV_URI}: {exc.message}") from None
        layer(found, lambda name: f"environment variable {ENV_URI} ({name})")
    for name, value in overrides.items():
        where = f"keyword argument {name!r}"
        layer({name: coerce(name, value, where)}, lambda name, where=where: where)
    check_together({**DEFAULTS, **values}, lambda name: origins.get(name, f"setting {name!r}"))
    return EtcdSettings(**values)
