"""Settings of link.etcd: where the cluster is and how to talk to it.

:class:`EtcdSettings` is a frozen dataclass.  :func:`load_settings` builds one
from these layers, lowest to highest priority (a higher layer overrides a lower
one key by key)::

    dataclass defaults
    < middleware.conf files on conf_search_path() (a later file beats an earlier one)
    < LINK_ETCD_<FIELD> environment variables
    < one etcd:// URI (the ``uri=`` argument, else $LINK_ETCD_URI)
    < keyword arguments

Every bad setting raises :class:`~link.etcd.errors.EtcdSettingsError` naming
where it came from (file, environment variable, URI or argument), the key and
the value.  Passwords are never shown: not in ``repr``, not in error messages
(nor the lines of a configuration file, which may hold one).

The package follows the seams of the work:

- :mod:`.coercion`: one value at a time (numbers through msgspec, booleans,
  hosts, endpoints);
- :mod:`.model`: :class:`EtcdSettings`, one line per field (type, default,
  coercer), and the checks across fields and of the TLS files;
- :mod:`.files`: ``middleware.conf`` search path and reading;
- :mod:`.environ`: ``LINK_ETCD_<FIELD>`` variables;
- :mod:`.uri`: ``etcd://`` URIs and their masking;
- :mod:`.merge`: :func:`load_settings`.
"""

from __future__ import annotations

from .environ import ENV_PREFIX, ENV_URI, read_environ
from .files import B3J0F_CONF_DIR, CONF_PATH, CONF_SECTION, conf_search_path, read_conf_file
from .merge import load_settings
from .model import FIELD_NAMES, EtcdSettings
from .uri import URI_SCHEMES, mask_uri, parse_uri

__all__ = [
    "B3J0F_CONF_DIR",
    "CONF_PATH",
    "CONF_SECTION",
    "ENV_PREFIX",
    "ENV_URI",
    "FIELD_NAMES",
    "URI_SCHEMES",
    "EtcdSettings",
    "conf_search_path",
    "load_settings",
    "mask_uri",
    "parse_uri",
    "read_conf_file",
    "read_environ",
]
