"""Configuration frameworks on etcd: one module per framework, and what they share.

- :mod:`.pydantic`: :class:`~.pydantic.EtcdSettingsSource`, a pydantic-settings
  source (``pip install 'link.etcd[pydantic]'``; also importable as
  ``link.etcd.pydantic_source``);
- :mod:`.b3j0f`: :class:`~.b3j0f.EtcdConfDriver`, a b3j0f.conf driver
  (``pip install 'link.etcd[b3j0f]'``; also importable as ``link.etcd.driver``);
- :mod:`.layers`: several subtrees read in one request and merged, with the
  layer each value came from;
- :mod:`.cache`: the local cache file a service boots from when etcd is down;
- :mod:`.live`: validated reloads with last-known-good, one watch per configuration.

See ``docs/service-config.md``.
"""

from __future__ import annotations

from typing import NoReturn

#: The top-level packages each extra installs.
EXTRAS = {
    "pydantic": ("pydantic", "pydantic_settings", "pydantic_core"),
    "b3j0f": ("b3j0f", "six"),
}


def missing_extra(extra: str, exc: ModuleNotFoundError) -> NoReturn:
    """Raise ``exc`` again, with the install command of ``extra`` when the missing
    module is one that extra provides.

    :raises ModuleNotFoundError: always (``name`` kept, ``exc`` chained).
    """
    root = (exc.name or "").split(".")[0]
    if root not in EXTRAS.get(extra, ()):
        raise exc
    raise ModuleNotFoundError(
        f"{exc.msg}: this part of link.etcd needs its {extra!r} extra: "
        f"pip install 'link.etcd[{extra}]'",
        name=exc.name,
    ) from exc
