"""EtcdSettingsSource: a pydantic-settings source reading a subtree of etcd.

Install with ``pip install 'link.etcd[pydantic]'``::

    from pydantic import BaseModel
    from pydantic_settings import BaseSettings
    from link.etcd.pydantic_source import EtcdSettingsSource

    class Database(BaseModel):
        host: str = "localhost"
        port: int = 5432

    class ServiceSettings(BaseSettings):
        db: Database = Database()
        debug: bool = False

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            etcd = EtcdSettingsSource(settings_cls, "/myservice/config")
            # earlier wins: arguments, then environment, then etcd, then secrets
            return init_settings, env_settings, etcd, file_secret_settings

Nested directories map to nested models (``/myservice/config/db/port`` is
``settings.db.port``); pydantic does validation and types.  A value from etcd
that fails validation raises :class:`pydantic_settings.SettingsError` naming
the etcd key.  Reading is one request (v3: one ``txn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from . import codec
from .middleware import EtcdMiddleware
from .watch import TreeWatch


class EtcdSettingsSource(PydanticBaseSettingsSource):
    """Settings from the subtree at ``path``: each child is a field (by name or alias).

    :param settings_cls: the ``BaseSettings`` class being built.
    :param path: middleware path of the subtree (``'/myservice/config'``).
    :param client: the :class:`EtcdMiddleware` to read through; when ``None`` one is
        made from ``settings`` (``endpoints``, ``api``, ``prefix``, ``uri``, ...,
        else ``middleware.conf`` and ``LINK_ETCD_*``).
    :raises SettingsError: (when called) a value from etcd fails validation; the
        message names the etcd key.
    :raises link.etcd.EtcdConnectionFailed: (when called) no endpoint answered.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        path: str,
        client: EtcdMiddleware | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.client = client if client is not None else EtcdMiddleware(**settings)

    def __repr__(self) -> str:
        return f"EtcdSettingsSource(path={self.path!r}, client={self.client!r})"

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The field's value from etcd (one read per call; ``__call__`` reads once)."""
        tree = self._read()
        name = self._stored_name(field, field_name, tree)
        return tree.get(name) if name else None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Read the subtree once and return ``{field name or alias: value}`` for the
        fields it holds (other keys are ignored).

        :raises SettingsError: values that fail validation, each named by etcd key.
        """
        tree = self._read()
        data: dict[str, Any] = {}
        problems: list[str] = []
        for field_name, field in self.settings_cls.model_fields.items():
            name = self._stored_name(field, field_name, tree)
            if name is None:
                continue
            problems += self._check(field, name, tree[name])
            data[field.alias or field_name] = tree[name]
        if problems:
            raise SettingsError(
                f"invalid settings in etcd for {self.settings_cls.__name__}: " + "; ".join(problems)
            )
        return data

    def _read(self) -> dict[str, Any]:
        tree = self.client.get(self.path, {})
        return tree if isinstance(tree, dict) else {}

    @staticmethod
    def _stored_name(field: FieldInfo, field_name: str, tree: dict[str, Any]) -> str | None:
        for name in (field.validation_alias, field.alias, field_name):
            if isinstance(name, str) and name in tree:
                return name
        return None

    def _check(self, field: FieldInfo, name: str, value: Any) -> list[str]:
        """Validate one value alone so that each error can name its etcd key.

        Errors of kind ``missing`` are left to pydantic: another source (the
        environment, arguments) may provide the rest of a nested model.
        """
        try:
            TypeAdapter(field.annotation or Any).validate_python(value)
        except ValidationError as exc:
            return [
                f"etcd key {self._key(name, e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
                if e["type"] != "missing"
            ]
        return []

    def _key(self, name: str, loc: tuple[Any, ...]) -> str:
        """Where the value at ``loc`` of field ``name`` is stored: the etcd key of the
        deepest directory or leaf that has a name, then list indexes (``[1]``), since
        list item keys differ between v3 (positions) and v2 (in-order keys)."""
        names = [name]
        rest = ""
        for part in loc:
            if rest or isinstance(part, int):
                rest += f"[{part!r}]"
            else:
                names.append(str(part))
        path = self.path.rstrip("/") + "".join("/" + codec.escape_name(n) for n in names)
        return repr(self.client.key(path)) + (f" item {rest}" if rest else "")

    def watch(self, callback: Callable[[BaseSettings], Any]) -> TreeWatch:
        """Call ``callback(settings_cls())`` now and whenever the subtree changes.

        One watch request on the subtree's prefix (no polling); the settings are
        rebuilt from every source, so precedence stays as configured.  Errors
        while rebuilding (e.g. validation) are logged and the watch goes on.

        :returns: the running :class:`TreeWatch`; ``stop()`` ends it.
        """

        def rebuild(tree: Any, revision: int) -> None:
            callback(self.settings_cls())

        return TreeWatch(self.client, self.path, rebuild)


__all__ = ["EtcdSettingsSource"]
