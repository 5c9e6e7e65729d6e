"""EtcdSettingsSource: a pydantic-settings source reading layered subtrees of etcd.

Install with ``pip install 'link.etcd[pydantic]'``::

    from pydantic import BaseModel
    from pydantic_settings import BaseSettings
    from link.etcd.pydantic_source import EtcdSettingsSource

    LAYERS = ["/config/defaults", "/config/prod", "/config/prod/web-1"]

    class Database(BaseModel):
        host: str = "localhost"
        port: int = 5432

    class ServiceSettings(BaseSettings):
        db: Database = Database()
        debug: bool = False

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            etcd = EtcdSettingsSource(settings_cls, LAYERS, cache_file="/var/cache/svc.json")
            # earlier wins: arguments, then environment, then etcd, then secrets
            return init_settings, env_settings, etcd, file_secret_settings

Nested directories map to nested models (``/config/prod/db/port`` is
``settings.db.port``); pydantic does validation and types.  Several paths are
layers, later ones overriding earlier ones key by key (see
:mod:`link.etcd.adapters.layers`), read in one request (v3: one ``txn``, one
revision).  A value from etcd that fails validation raises
:class:`pydantic_settings.SettingsError` naming the etcd key.

For a long-running service, :meth:`EtcdSettingsSource.watch` keeps the settings
current with validated reloads (see :mod:`link.etcd.adapters.live`); with
``cache_file`` a service boots from its last reading while etcd is down
(``source.stale``, also True while a running watch cannot reach etcd);
:meth:`EtcdSettingsSource.explain` says where each field's value came from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Annotated, Any

from . import missing_extra

try:
    from pydantic import TypeAdapter, ValidationError
    from pydantic.fields import FieldInfo
    from pydantic_settings import (
        BaseSettings,
        DotEnvSettingsSource,
        EnvSettingsSource,
        InitSettingsSource,
        PydanticBaseSettingsSource,
        SecretsSettingsSource,
        SettingsError,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - tested in a subprocess
    missing_extra("pydantic", exc)

from ..middleware import EtcdMiddleware
from .cache import CacheFile
from .layers import LayeredTree, Reading, leaf_paths
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

#: The reading the sources for ``(settings class, layer keys)`` must use while
#: this context builds settings (a reload validating a new reading, explain()),
#: so that a source made anew by ``settings_customise_sources`` does not read
#: etcd again.  Context-local: other threads and tasks never see it.
_PINNED: ContextVar[tuple[Any, Reading] | None] = ContextVar(
    "link_etcd_pinned_reading", default=None
)


class EtcdSettingsError(SettingsError):
    """Values from etcd failed validation.

    :attr problems: one line per value, naming its etcd key, the error and the value.
    """

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


class EtcdSettingsSource(PydanticBaseSettingsSource):
    """Settings from the subtree at ``path``, or from layered subtrees: each child
    is a field (by name or alias).

    :param settings_cls: the ``BaseSettings`` class being built.
    :param path: middleware path of the subtree (``'/myservice/config'``), or a
        list of paths, weakest first, merged key by key.
    :param client: the :class:`EtcdMiddleware` to read through; when ``None`` one is
        made from ``settings`` (``endpoints``, ``api``, ``prefix``, ``uri``,
        ``read_timeout``, ..., else ``middleware.conf`` and ``LINK_ETCD_*``).
    :param cache_file: a file where every successful read is saved (atomically,
        mode 0600), and where the configuration comes from when etcd cannot be
        reached (within ``read_timeout`` per endpoint); then :attr:`stale` is True.
    :raises EtcdInvalidTree: a bad path, or the same path twice.
    :raises SettingsError: (when called) a value from etcd fails validation; the
        message names the etcd key.
    :raises link.etcd.EtcdConnectionFailed: (when called) no endpoint answered and
        there is no ``cache_file``.
    :raises CacheFileError: (when called) no endpoint answered and the cache file
        is missing, corrupt or written for other paths (naming the file).
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: str | Sequence[str],
        client: EtcdMiddleware | None = None,
        *,
        cache_file: str | os.PathLike[str] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(settings_cls)
        self.client = client if client is not None else EtcdMiddleware(**settings)
        self.cache = CacheFile(cache_file) if cache_file is not None else None
        self.tree = LayeredTree(self.client, path, self.cache)
        self.paths = self.tree.paths
        #: The last (most specific) layer's path.
        self.path = self.paths[-1]
        self._reading: Reading | None = None
        self._live: LiveConfig[BaseSettings] | None = None

    def __repr__(self) -> str:
        return f"EtcdSettingsSource(paths={self.paths!r}, client={self.client!r})"

    # -- what was read ------------------------------------------------------

    @property
    def reading(self) -> Reading | None:
        """The layers in use: the live one when watching, else the last read."""
        if self._live is not None and self._live.reading is not None:
            return self._live.reading
        return self._reading

    @property
    def stale(self) -> bool:
        """True while nothing confirms the settings in use: they come from the cache
        file (etcd down at start-up), or, while :meth:`watch` runs, its last read
        of etcd failed (etcd down later; the settings are kept).  See
        :attr:`stale_since` and :attr:`LiveConfig.stale
        <link.etcd.adapters.live.LiveConfig.stale>`."""
        return self.stale_since is not None

    @property
    def stale_since(self) -> float | None:
        """``None`` while not :attr:`stale`; else when the settings in use were last
        read from etcd (seconds since the epoch): :attr:`saved_at` after a boot
        from the cache file, else the last successful read before the outage."""
        return stale_since(self._live, self._reading)

    @property
    def revision(self) -> int:
        """The revision (v3) or index (v2) of the settings in use (0: nothing read yet)."""
        reading = self.reading
        return 0 if reading is None else reading.revision

    @property
    def saved_at(self) -> float | None:
        """When the settings in use come from the cache file: when it was written
        (seconds since the epoch); ``None`` when they were read from etcd."""
        reading = self.reading
        return None if reading is None else reading.saved_at

    @property
    def settings(self) -> BaseSettings | None:
        """While :meth:`watch` runs: the last valid settings."""
        return None if self._live is None else self._live.current

    def _key(self) -> tuple[Any, tuple[str, ...]]:
        return self.settings_cls, tuple(self.tree.keys)

    def _current(self) -> Reading:
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] == self._key():
            return pinned[1]
        if self._live is not None and self._live.running and self._live.reading is not None:
            return self._live.reading
        self._reading = self.tree.boot()
        return self._reading

    # -- PydanticBaseSettingsSource -------------------------------------------

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The field's value from etcd (one read per call; ``__call__`` reads once)."""
        tree = self._current().tree
        name = _stored_name(field, field_name, tree)
        return tree.get(name) if name else None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Read the layers once (or use the reading of a running :meth:`watch`) and
        return ``{field name or alias: value}`` for the fields they hold (other keys
        are ignored).

        :raises SettingsError: values that fail validation, each named by etcd key.
        """
        reading = self._current()
        data: dict[str, Any] = {}
        problems: list[str] = []
        for field_name, field in self.settings_cls.model_fields.items():
            name = _stored_name(field, field_name, reading.tree)
            if name is None:
                continue
            problems += _check(field, name, reading.tree[name], reading)
            data[field.alias or field_name] = reading.tree[name]
        if problems:
            raise EtcdSettingsError(
                f"invalid settings in etcd for {self.settings_cls.__name__}: "
                + "; ".join(problems),
                problems,
            )
        return data

    # -- building settings ----------------------------------------------------

    def _settings_of(self, reading: Reading, **init: Any) -> BaseSettings:
        token = _PINNED.set((self._key(), reading))
        try:
            return self.settings_cls(**init)
        finally:
            _PINNED.reset(token)

    def load(self) -> BaseSettings:
        """Read the layers (or the cache file) once and build the settings class
        with every source, this one using that reading.

        :raises SettingsError: a value from etcd fails validation.
        :raises pydantic.ValidationError: the settings are invalid as a whole.
        :raises link.etcd.EtcdConnectionFailed: etcd unreachable, no cache file.
        :raises CacheFileError: etcd unreachable, cache file unusable.
        """
        self._reading = self.tree.boot()
        return self._settings_of(self._reading)

    def _build(self, reading: Reading) -> BaseSettings:
        try:
            return self._settings_of(reading)
        except EtcdSettingsError as exc:
            problems = exc.problems
        except ValidationError as exc:
            problems = [_problem(e, reading) for e in exc.errors()]
        raise InvalidConfiguration(
            f"invalid settings for {self.settings_cls.__name__} at revision "
            f"{reading.revision}: " + "; ".join(problems),
            revision=reading.revision,
            problems=problems,
        )

    @staticmethod
    def _changes(old: BaseSettings | None, new: BaseSettings) -> list[str]:
        return diff_paths(None if old is None else old.model_dump(), new.model_dump())

    def watch(
        self,
        on_change: OnChange | None = None,
        *,
        on_error: OnError | None = None,
        retry_seconds: float = RETRY_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> LiveConfig[BaseSettings]:
        """Keep the settings current: build them now, then again after every change
        of the layers, applying only valid ones.

        ``on_change(old, new, changed)`` is called at once (``old`` is ``None``) and
        after each applied change, with the old and new settings and the dotted
        field paths whose value differs (``['db.port']``); also, with ``changed``
        possibly empty, when etcd answers again after a boot from the cache.  An
        invalid change keeps the last good settings and calls
        ``on_error(InvalidConfiguration)`` once, naming each etcd key, value and
        error (also logged as a warning).  Settings are rebuilt from every source,
        so precedence stays as configured.  One watch on the layers' deepest
        common path (no polling); a txn of many keys gives one rebuild.

        While a read fails (etcd down or unreachable), the settings in use are
        kept and :attr:`stale` is True (one warning); the layers are read every
        ``retry_seconds`` until etcd answers.

        :param retry_seconds: seconds between reads while etcd is unreachable.
        :param check_seconds: the layers are read when this many seconds passed
            without a read (no change arrived): an outage is noticed within
            ``check_seconds`` plus the read's ``read_timeout`` per endpoint.
        :returns: the running :class:`~link.etcd.adapters.live.LiveConfig`
            (``current``: the settings in use; ``stop()`` ends it).
        :raises ValueError: ``retry_seconds`` or ``check_seconds`` not positive.
        :raises InvalidConfiguration: the settings at start are invalid.
        :raises link.etcd.EtcdConnectionFailed: etcd unreachable, no cache file.
        :raises CacheFileError: etcd unreachable, cache file unusable.
        """
        live = LiveConfig(
            self.tree,
            self._build,
            self._changes,
            on_change,
            on_error,
            retry_seconds=retry_seconds,
            check_seconds=check_seconds,
        )
        self._live = live
        return live.start()

    # -- provenance -------------------------------------------------------------

    def explain(self) -> dict[str, str]:
        """Where the value of each field comes from: ``{dotted field path: origin}``,
        ``origin`` being ``'etcd <layer path>'`` for a value from etcd, the class name
        of another pydantic-settings source (``'EnvSettingsSource'``,
        ``'DotEnvSettingsSource'``, ...) or ``'default'``.  Keyword arguments given
        to the settings class when it was built are not known here.

        Uses the reading in use (reads etcd, or the cache, if there is none yet).
        """
        reading = self.reading or self._current()
        token = _PINNED.set((self._key(), reading))
        try:
            settings = self.settings if self.settings is not None else self.settings_cls()
            origins = self._origins(reading)
        finally:
            _PINNED.reset(token)
        out: dict[str, str] = {}
        for leaf in leaf_paths(settings.model_dump()):
            out[".".join(map(str, leaf))] = _lookup(origins, leaf) or "default"
        return out

    def _origins(self, reading: Reading) -> dict[tuple[str, ...], str]:
        cls = self.settings_cls
        sources = cls.settings_customise_sources(
            cls,
            init_settings=InitSettingsSource(cls, init_kwargs={}),
            env_settings=EnvSettingsSource(cls),
            dotenv_settings=DotEnvSettingsSource(cls),
            file_secret_settings=SecretsSettingsSource(cls),
        )
        names = _field_names(cls)
        origins: dict[tuple[str, ...], str] = {}
        for source in sources:
            ours = isinstance(source, EtcdSettingsSource) and source._key() == self._key()
            for leaf in leaf_paths(source()):
                if not leaf:
                    continue
                field = (names.get(leaf[0], leaf[0]), *leaf[1:])
                if _lookup(origins, field) is not None or any(
                    k[: len(field)] == field for k in origins
                ):
                    continue  # an earlier source supplies it
                if ours:
                    layer = reading.origin(field)
                    origins[field] = f"etcd {layer.path}" if layer else "etcd"
                else:
                    origins[field] = type(source).__name__
        return origins


def _lookup(origins: dict[tuple[str, ...], str], leaf: tuple[Any, ...]) -> str | None:
    for end in range(len(leaf), 0, -1):
        found = origins.get(tuple(leaf[:end]))
        if found is not None:
            return found
    return None


def _field_names(cls: type[BaseSettings]) -> dict[str, str]:
    names: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        for alias in (field.validation_alias, field.alias):
            if isinstance(alias, str):
                names[alias] = name
    return names


def _stored_name(field: FieldInfo, field_name: str, tree: dict[str, Any]) -> str | None:
    for name in (field.validation_alias, field.alias, field_name):
        if isinstance(name, str) and name in tree:
            return name
    return None


def _check(field: FieldInfo, name: str, value: Any, reading: Reading) -> list[str]:
    """Validate one value alone (with the field's constraints) so that each error
    can name its etcd key.

    Errors of kind ``missing`` are left to pydantic: another source (the
    environment, arguments) may provide the rest of a nested model.
    """
    annotation: Any = field.annotation if field.annotation is not None else Any
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        return [
            f"etcd key {reading.where((name, *e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
            if e["type"] != "missing"
        ]
    return []


def _problem(error: Any, reading: Reading) -> str:
    """One line for an error of the whole settings model, naming the etcd key when
    the value came from etcd."""
    loc = tuple(error["loc"])
    if not loc:  # a model validator: the settings as a whole
        return f"the settings as a whole: {error['msg']}"
    key = reading.where(loc)
    where = f"etcd key {key}" if key else "field " + ".".join(map(str, loc))
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


__all__ = ["EtcdSettingsError", "EtcdSettingsSource"]
