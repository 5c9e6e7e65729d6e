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

With ``layers=['/config/defaults', '/config/prod']`` a conf path is looked up
under each layer, later ones overriding earlier ones parameter by parameter,
all layers in one read (v3: one txn, one revision).  With ``cache_file=`` the
driver boots from its last reading when etcd cannot be reached.
:meth:`EtcdConfDriver.reconfigure_on_change` applies only changes that pass
the Parameters' types and keeps the last good configuration otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import _b3j0f_compat
from ..errors import EtcdInvalidTree
from ..middleware import EtcdMiddleware
from ..watch import TreeWatch
from . import missing_extra
from .cache import CacheFile
from .layers import LayeredTree, Reading, leaf_paths, normalize
from .live import (
    CHECK_SECONDS,
    RETRY_SECONDS,
    InvalidConfiguration,
    LiveConfig,
    OnChange,
    OnError,
    diff_paths,
    stale_since,
)

_b3j0f_compat.install()

try:
    from b3j0f.conf.configurable.core import Configurable
    from b3j0f.conf.driver.base import ConfDriver
    from b3j0f.conf.model.param import Parameter
except ModuleNotFoundError as exc:  # pragma: no cover - tested in a subprocess
    missing_extra("b3j0f", exc)


_log = logging.getLogger(__name__)
_STORABLE = (str, int, float, bool, list, tuple, dict)


def conf_path(path: str) -> str:
    """The middleware path of a b3j0f conf path: ``'a/b.conf'`` → ``'/a/b.conf'``."""
    return "/" + path.lstrip("/")


class EtcdConfDriver(ConfDriver):  # type: ignore[misc]
    """A b3j0f.conf driver reading and writing configuration in etcd.

    :param client: an existing :class:`EtcdMiddleware` to use; when ``None`` one
        is created on first use from ``settings`` (the same keyword arguments as
        :class:`EtcdMiddleware`: ``endpoints``, ``api``, ``prefix``, ``uri``,
        ``read_timeout``, ..., else ``middleware.conf`` and ``LINK_ETCD_*``).
        No connection is opened at import or construction time.
    :param layers: paths under which each conf path is looked up, weakest first
        (default: only ``/``, i.e. ``/<conf path>``).
    :param cache_file: a file where every successful read is saved (atomically,
        mode 0600), and where configuration comes from when etcd cannot be
        reached; then :attr:`stale` is True until etcd answers.
    :raises EtcdInvalidTree: a bad layer path, or the same layer twice.
    """

    def __init__(
        self,
        client: EtcdMiddleware | None = None,
        *,
        layers: Sequence[str] = ("/",),
        cache_file: str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self._client = client
        self._settings = settings
        self.layers = normalize(layers)
        self.cache = CacheFile(cache_file) if cache_file is not None else None
        self._lock = threading.RLock()
        self._trees: dict[str, LayeredTree] = {}
        self._readings: dict[str, Reading] = {}  # the last reading of each conf path
        self._serving: dict[str, Reading] = {}  # readings being validated
        self._lives: dict[str, LiveConfig[Any]] = {}
        self._resources: dict[str, Any] | None = None
        self._last: Reading | None = None

    def __repr__(self) -> str:
        return f"EtcdConfDriver({self._client!r})" if self._client else "EtcdConfDriver()"

    @property
    def client(self) -> EtcdMiddleware:
        """The middleware, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = EtcdMiddleware(**self._settings)
            return self._client

    # -- what was read ------------------------------------------------------

    def reading(self, path: str) -> Reading | None:
        """The layers in use for the conf path ``path`` (``None``: not read yet):
        ``.revision``, ``.stale``, ``.saved_at``, ``.tree``."""
        live = self._lives.get(path)
        if live is not None and live.reading is not None:
            return live.reading
        return self._readings.get(path)

    @property
    def stale(self) -> bool:
        """True while nothing confirms the configuration of some conf path in use: it
        comes from the cache file (etcd down at start-up), or the last read of a
        running :meth:`reconfigure_on_change` failed (etcd down later; the
        configuration is kept).  See :attr:`stale_since`."""
        return self.stale_since is not None

    @property
    def stale_since(self) -> float | None:
        """``None`` while not :attr:`stale`; else the earliest, over the stale conf
        paths, of when their configuration was last read from etcd (seconds since
        the epoch): the cache file's ``saved_at`` after a boot from it, else the
        last successful read before the outage."""
        with self._lock:
            paths = self._readings.keys() | self._lives.keys()
            states = [(self._lives.get(p), self._readings.get(p)) for p in paths]
        times = [t for t in (stale_since(live, r) for live, r in states) if t is not None]
        return min(times, default=None)

    @property
    def revision(self) -> int:
        """The revision (v3) or index (v2) of the last configuration read (0: none)."""
        return 0 if self._last is None else self._last.revision

    def explain(self, path: str) -> dict[str, str]:
        """For each parameter of the conf path ``path`` found in etcd,
        ``{'CATEGORY.param': 'etcd <layer path>'}``: the layer that supplied it.
        Parameters that etcd does not hold (defaults, other drivers) are not listed.
        """
        reading = self.reading(path) or self._reading_for(path)
        out = {}
        for leaf in leaf_paths(reading.tree):
            if len(leaf) >= 2:
                layer = reading.origin(leaf)
                out[".".join(leaf[:2])] = f"etcd {layer.path}" if layer else "etcd"
        return out

    # -- ConfDriver API ----------------------------------------------------

    def rscpaths(self, path: str) -> list[str]:
        """One resource per layer: the middleware path ``<layer>/<path>``."""
        return [(layer.rstrip("/") + conf_path(path)) for layer in self.layers]

    def resource(self) -> dict[str, Any]:
        """An empty configuration resource: ``{category: {parameter: value}}``."""
        return {}

    def _tree(self, path: str) -> LayeredTree:
        with self._lock:
            tree = self._trees.get(path)
            if tree is None:
                tree = self._trees[path] = LayeredTree(self.client, self.rscpaths(path), self.cache)
            return tree

    def _reading_for(self, path: str) -> Reading:
        """What ``getconf(path)`` uses: a reading being validated, else the live one
        of a running reconfiguration, else a new read (or the cache)."""
        with self._lock:
            reading = self._serving.get(path)
            live = self._lives.get(path)
        if reading is None and live is not None and live.running:
            reading = live.reading
        if reading is None:
            reading = self._tree(path).boot()
            with self._lock:
                self._readings[path] = reading
        self._last = reading
        return reading

    def getconf(self, path: str, conf: Any = None, logger: Any = None) -> Any:
        """The configuration of the conf path ``path`` from every layer (one read;
        later layers override earlier ones parameter by parameter); ``None`` when
        no layer holds anything.

        :raises EtcdConnectionFailed: etcd cannot be reached and there is no cache.
        :raises CacheFileError: etcd cannot be reached and the cache is unusable.
        """
        reading = self._reading_for(path)
        with self._lock:
            self._resources = {layer.path: layer.tree or None for layer in reading.layers}
            try:
                return ConfDriver.getconf(self, path, conf=conf, logger=logger)
            finally:
                self._resources = None

    def pathresource(self, rscpath: str | None = None, logger: Any = None) -> Any:
        """The tree at ``rscpath`` (one read), ``None`` when nothing is stored there.

        Unlike b3j0f's base class, errors are not logged and swallowed: an
        unreachable cluster raises :class:`link.etcd.EtcdConnectionFailed`.
        """
        return self._pathresource(rscpath or "/")

    def _pathresource(self, rscpath: str) -> dict[str, Any] | None:
        resources = self._resources
        if resources is not None and rscpath in resources:
            return resources[rscpath]  # type: ignore[no-any-return]
        value = self.client.get(conf_path(rscpath))
        if value is not None and not isinstance(value, dict):
            _log.warning("%s holds %r, not categories: ignored", rscpath, type(value).__name__)
            return None
        return value

    def _cnames(self, resource: dict[str, Any]) -> list[str]:
        return [name for name, value in resource.items() if isinstance(value, dict)]

    def _params(self, resource: dict[str, Any], cname: str) -> list[Any]:
        return [_parameter(name, value) for name, value in resource[cname].items()]

    def setconf(self, conf: Any, rscpath: str, logger: Any = None) -> None:
        """Store the parameters of ``conf`` that have a value into the tree of the conf
        path ``rscpath`` in the last layer, merged with what is stored there, and
        write it back (v3: one txn when it fits).  Parameters whose value is
        ``None`` are left as stored.

        Unlike b3j0f's base class, errors are raised, not logged and swallowed.

        :raises EtcdInvalidTree: no parameter of ``conf`` has a value (nothing is
            written: storing ``None`` for every parameter is never what was meant;
            set the values first, e.g. ``conf['CAT']['param'].value = 5``).
        :raises EtcdConnectionFailed: etcd cannot be reached.
        """
        values = _values_to_store(conf)
        path = self.rscpaths(rscpath)[-1]
        if not values:
            names = [f"{c.name}.{p.name}" for c in conf.values() for p in c.values()]
            raise EtcdInvalidTree(
                f"setconf of {path!r}: no parameter has a value ({', '.join(names) or 'none'}"
                " are all None); nothing written",
                key=path,
            )
        stored = self.client.get(path)
        resource = stored if isinstance(stored, dict) else {}
        for cname, params in values.items():
            category = resource.get(cname)
            resource[cname] = {**(category if isinstance(category, dict) else {}), **params}
        self.client[path] = resource

    def _setconf(self, conf: Any, resource: dict[str, Any], rscpath: str) -> None:
        """b3j0f's hook; :meth:`setconf` does the work."""
        self.setconf(conf, rscpath)

    # -- validation -------------------------------------------------------------

    @contextlib.contextmanager
    def _serve(self, path: str, reading: Reading) -> Iterator[None]:
        """Make ``getconf(path)`` use ``reading`` (in this thread, under the lock)."""
        with self._lock:
            previous = self._serving.get(path)
            self._serving[path] = reading
            try:
                yield
            finally:
                if previous is None:
                    del self._serving[path]
                else:
                    self._serving[path] = previous

    def _build(self, configurable: Any, path: str, reading: Reading) -> Any:
        """The configuration of ``configurable`` with ``reading`` for ``path``, every
        parameter resolved, or :class:`InvalidConfiguration`."""
        problems = _problems(configurable, reading)
        if problems:
            raise InvalidConfiguration(
                f"invalid configuration for {path!r} at revision {reading.revision}: "
                + "; ".join(problems),
                revision=reading.revision,
                problems=problems,
            )
        with self._serve(path, reading):
            conf = configurable.getconf()
        conf.resolve(configurable=configurable)
        return conf

    # -- live reconfiguration ---------------------------------------------

    def watch(self, path: str, callback: Callable[[Any, int], Any]) -> Any:
        """Call ``callback(tree, revision)`` now and whenever the conf path ``path``
        changes in etcd (with layers: the merged tree, ``{}`` when none holds it).

        :returns: the running watch (a :class:`TreeWatch`, or with several layers
            a :class:`LiveConfig`); ``stop()`` ends it.
        """
        if len(self.layers) == 1:
            return TreeWatch(self.client, self.rscpaths(path)[0], callback)

        def changed(old: Any, new: Reading, paths: list[str]) -> None:
            callback(new.tree, new.revision)

        live: LiveConfig[Reading] = LiveConfig(
            self._tree(path), lambda r: r, lambda old, new: ["*"], changed
        )
        return live.start()

    def reconfigure_on_change(
        self,
        target: Any,
        on_change: OnChange | None = None,
        on_error: OnError | None = None,
        *,
        retry_seconds: float = RETRY_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> list[LiveConfig[Any]]:
        """Re-apply the configuration of ``target`` (an instance of a class decorated
        with ``@Configurable(..., drivers=[this driver])``) whenever one of its conf
        paths changes in etcd: one watch per conf path, no polling.

        A change is validated first: each stored value must parse with its
        Parameter's ``ptype``.  A valid one is applied to ``target``, then
        ``on_change(old, new, changed)`` is called with the old and new
        ``{category: {parameter: value}}`` and the changed ``'CATEGORY.param'``
        names (also once at start, with ``old`` ``None``).  An invalid one keeps
        the configuration in use and calls ``on_error(InvalidConfiguration)`` once,
        naming each etcd key, value and error (also logged as a warning).

        While a read fails (etcd down or unreachable), the configuration in use
        is kept and :attr:`stale` is True (one warning per conf path); the layers
        are read every ``retry_seconds`` until etcd answers.

        :param retry_seconds: seconds between reads while etcd is unreachable.
        :param check_seconds: the layers are read when this many seconds passed
            without a read (no change arrived): an outage is noticed within
            ``check_seconds`` plus the read's ``read_timeout`` per endpoint.
        :returns: the running :class:`LiveConfig` s; ``stop()`` each to end.
        :raises ValueError: ``retry_seconds`` or ``check_seconds`` not positive.
        :raises InvalidConfiguration: the configuration at start is invalid.
        """
        lives: list[LiveConfig[Any]] = []
        for configurable in Configurable.get_annotations(target):
            if self not in configurable.drivers:
                continue
            paths = configurable.paths
            for path in [paths] if isinstance(paths, str) else paths:
                live: LiveConfig[Any] = LiveConfig(
                    self._tree(path),
                    _bind(self._build, configurable, path),
                    lambda old, new: diff_paths(_values_of(old), _values_of(new)),
                    _applier(configurable, target, on_change),
                    on_error,
                    retry_seconds=retry_seconds,
                    check_seconds=check_seconds,
                )
                with self._lock:
                    self._lives[path] = live
                lives.append(live.start())
        return lives


def _bind(build: Callable[..., Any], configurable: Any, path: str) -> Callable[[Reading], Any]:
    return lambda reading: build(configurable, path, reading)


def _applier(configurable: Any, target: Any, on_change: OnChange | None) -> OnChange:
    def apply(old: Any, new: Any, changed: list[str]) -> None:
        configurable.configure(conf=new, targets=[target])
        if on_change is not None:
            on_change(None if old is None else _values_of(old), _values_of(new), changed)

    return apply


def _parameter(name: str, value: Any) -> Any:
    # Strings go through the Parameter's ptype (svalue); typed values are kept.
    if isinstance(value, str):
        return Parameter(name=name, svalue=value)
    return Parameter(name=name, value=value)


def _problems(configurable: Any, reading: Reading) -> list[str]:
    """One line per stored value that does not parse with its Parameter's type."""
    problems = []
    declared = configurable.conf
    for cname, params in reading.tree.items():
        if not isinstance(params, dict):
            continue
        for name, value in params.items():
            if cname in declared and name in declared[cname]:
                expected = declared[cname][name]
            else:
                expected = declared.param(pname=name)
            if expected is None:
                continue
            parameter = _parameter(name, value)
            svalue = parameter.svalue
            try:
                parameter.update(expected)
                if svalue is not None:
                    parameter.svalue = svalue
                parameter.resolve(configurable=configurable)
            except (Parameter.Error, TypeError) as exc:  # unparsable; of the wrong type
                cause = parameter.error or exc
                problems.append(
                    f"etcd key {reading.where((cname, name))}: {value!r} is not a valid "
                    f"{getattr(expected.ptype, '__name__', expected.ptype)}: {cause}"
                )
    return problems


def _values_of(conf: Any) -> dict[str, dict[str, Any]] | None:
    """``{category: {parameter: value}}`` of a resolved b3j0f Configuration."""
    if conf is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for category in conf.values():
        params = out.setdefault(category.name, {})
        for parameter in category.values():
            try:
                params[parameter.name] = parameter.value
            except Parameter.Error:  # unresolvable: b3j0f leaves it unset too
                params[parameter.name] = None
    return out


def _values_to_store(conf: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for category in conf.values():
        for parameter in category.values():
            value = _storable(parameter)
            if value is not None:
                out.setdefault(category.name, {})[parameter.name] = value
    return out


def _storable(parameter: Any) -> Any:
    try:
        value = parameter.value
    except Parameter.Error:  # an svalue that does not parse: store it as written
        value = None
    if value is None:
        return parameter.svalue
    return value if isinstance(value, _STORABLE) else parameter.svalue


__all__ = ["EtcdConfDriver", "InvalidConfiguration", "conf_path"]
