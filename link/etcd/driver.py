"""EtcdConfDriver: b3j0f.conf configuration kept in etcd.

Install with ``pip install 'link.etcd[b3j0f]'``: the four b3j0f releases are
pinned and run on Python 3.11+ thanks to ``link.etcd._b3j0f_compat`` (installed
before the first ``b3j0f`` import by a start-up hook, so b3j0f may be imported
first, as in its tutorial)::

    from b3j0f.conf import Configurable, category, Parameter
    from link.etcd.driver import EtcdConfDriver

    @Configurable(
        paths='myproject/myconfigurable.conf',
        conf=category('MYCONF', Parameter(name='myparam', ptype=int)),
        drivers=[EtcdConfDriver()],
    )
    class MyConfigurable:
        pass

The configuration of a conf path lives in etcd under ``/<conf path>``, one
directory per category and one leaf per parameter:
``/myproject/myconfigurable.conf/MYCONF/myparam``.  Loading it is one read
request (v3: one ``txn``); a missing path means "no configuration from this
driver".  Connection errors are raised, never taken for a missing path.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _b3j0f_compat

_b3j0f_compat.install()

from b3j0f.conf.configurable.core import Configurable  # noqa: E402
from b3j0f.conf.driver.base import ConfDriver  # noqa: E402
from b3j0f.conf.model.param import Parameter  # noqa: E402

from .middleware import EtcdMiddleware  # noqa: E402
from .watch import TreeWatch  # noqa: E402

_log = logging.getLogger(__name__)
_STORABLE = (str, int, float, bool, list, tuple, dict, type(None))


def conf_path(path: str) -> str:
    """The middleware path of a b3j0f conf path: ``'a/b.conf'`` → ``'/a/b.conf'``."""
    return "/" + path.lstrip("/")


class EtcdConfDriver(ConfDriver):  # type: ignore[misc]
    """A b3j0f.conf driver reading and writing configuration in etcd.

    :param client: an existing :class:`EtcdMiddleware` to use; when ``None`` one
        is created on first use from ``settings`` (the same keyword arguments as
        :class:`EtcdMiddleware`: ``endpoints``, ``api``, ``prefix``, ``uri``, ...,
        else ``middleware.conf`` and ``LINK_ETCD_*``).  No connection is opened
        at import or construction time.
    """

    def __init__(self, client: EtcdMiddleware | None = None, **settings: Any) -> None:
        super().__init__()
        self._client = client
        self._settings = settings

    def __repr__(self) -> str:
        return f"EtcdConfDriver({self._client!r})" if self._client else "EtcdConfDriver()"

    @property
    def client(self) -> EtcdMiddleware:
        """The middleware, created on first use."""
        if self._client is None:
            self._client = EtcdMiddleware(**self._settings)
        return self._client

    # -- ConfDriver API ----------------------------------------------------

    def rscpaths(self, path: str) -> list[str]:
        """One resource per conf path: the middleware path ``/<path>``."""
        return [conf_path(path)]

    def resource(self) -> dict[str, Any]:
        """An empty configuration resource: ``{category: {parameter: value}}``."""
        return {}

    def pathresource(self, rscpath: str | None = None, logger: Any = None) -> Any:
        """The tree at ``rscpath`` (one read), ``None`` when nothing is stored there.

        Unlike b3j0f's base class, errors are not logged and swallowed: an
        unreachable cluster raises :class:`link.etcd.EtcdConnectionFailed`.
        """
        return self._pathresource(rscpath or "/")

    def _pathresource(self, rscpath: str) -> dict[str, Any] | None:
        value = self.client.get(conf_path(rscpath))
        if value is not None and not isinstance(value, dict):
            _log.warning("%s holds %r, not categories: ignored", rscpath, type(value).__name__)
            return None
        return value

    def _cnames(self, resource: dict[str, Any]) -> list[str]:
        return [name for name, value in resource.items() if isinstance(value, dict)]

    def _params(self, resource: dict[str, Any], cname: str) -> list[Any]:
        # Strings go through the Parameter's ptype (svalue); typed values are kept.
        return [
            Parameter(name=name, svalue=value)
            if isinstance(value, str)
            else Parameter(name=name, value=value)
            for name, value in resource[cname].items()
        ]

    def _setconf(self, conf: Any, resource: dict[str, Any], rscpath: str) -> None:
        """Merge ``conf`` into the stored tree and write it back (v3: one txn)."""
        for category in conf.values():
            stored = resource.setdefault(category.name, {})
            for parameter in category.values():
                stored[parameter.name] = _storable(parameter)
        self.client[conf_path(rscpath)] = resource

    # -- live reconfiguration ---------------------------------------------

    def watch(self, path: str, callback: Any) -> TreeWatch:
        """Call ``callback(tree, revision)`` now and whenever ``/<path>`` changes.

        :returns: the running :class:`TreeWatch`; ``stop()`` ends it.
        """
        return TreeWatch(self.client, conf_path(path), callback)

    def reconfigure_on_change(self, target: Any) -> list[TreeWatch]:
        """Re-apply the configuration of ``target`` (an instance of a class decorated
        with ``@Configurable(..., drivers=[this driver])``) whenever one of its conf
        paths changes in etcd: one watch per path, no polling.

        :returns: the running watches; ``stop()`` each to end.
        """
        watches = []
        for configurable in Configurable.get_annotations(target):
            if self not in configurable.drivers:
                continue
            paths = configurable.paths
            for path in [paths] if isinstance(paths, str) else paths:
                watches.append(self.watch(path, _reapply(configurable, target)))
        return watches


def _reapply(configurable: Any, target: Any) -> Any:
    def callback(tree: Any, revision: int) -> None:
        configurable.applyconfiguration(targets=[target])

    return callback


def _storable(parameter: Any) -> Any:
    value = parameter.value
    if value is None and parameter.svalue is not None:
        return parameter.svalue
    return value if isinstance(value, _STORABLE) else parameter.svalue


__all__ = ["EtcdConfDriver", "conf_path"]
