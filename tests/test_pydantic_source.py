"""EtcdSettingsSource with pydantic-settings, against a real etcd, on both APIs."""

import queue
from typing import Any

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from link.etcd import EtcdMiddleware
from link.etcd.pydantic_source import EtcdSettingsSource

WAIT = 10.0


class Database(BaseModel):
    host: str = "localhost"
    port: int = 5432


class Limits(BaseModel):
    workers: list[int] = []
    ratio: float = 1.0


def settings_class(client: EtcdMiddleware) -> type[BaseSettings]:
    class ServiceSettings(BaseSettings):
        db: Database = Database()
        limits: Limits = Limits()
        debug: bool = False
        name: str = Field("svc", alias="service-name")

        model_config = {"env_prefix": "SVC_", "env_nested_delimiter": "__"}

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            etcd = EtcdSettingsSource(settings_cls, "/myservice/config", client=client)
            return init_settings, env_settings, etcd

    return ServiceSettings


def test_nested_models_from_etcd(client: EtcdMiddleware) -> None:
    client["/myservice/config"] = {
        "db": {"host": "db1", "port": 6543},
        "limits": {"workers": [1, 2, 3], "ratio": 0.5},
        "debug": True,
        "service-name": "billing",
        "unknown": "ignored",
    }
    settings: Any = settings_class(client)()
    assert settings.db == Database(host="db1", port=6543)
    assert settings.limits == Limits(workers=[1, 2, 3], ratio=0.5)
    assert settings.debug is True
    assert settings.name == "billing"


def test_strings_written_by_other_tools_are_validated(client: EtcdMiddleware) -> None:
    client["/myservice/config"] = {"db": {"port": "7000"}, "debug": "true"}
    settings: Any = settings_class(client)()
    assert settings.db.port == 7000
    assert settings.debug is True


def test_precedence_env_over_etcd(client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch) -> None:
    client["/myservice/config"] = {"db": {"host": "from-etcd", "port": 1}, "debug": True}
    monkeypatch.setenv("SVC_DEBUG", "false")
    settings: Any = settings_class(client)()
    assert settings.debug is False  # environment wins
    assert settings.db.host == "from-etcd"
    given: Any = settings_class(client)(debug=True)
    assert given.debug is True  # arguments win over all


def test_missing_subtree_gives_defaults(client: EtcdMiddleware) -> None:
    settings: Any = settings_class(client)()
    assert settings.db == Database()
    assert settings.debug is False


def test_validation_error_names_the_etcd_key(client: EtcdMiddleware) -> None:
    client["/myservice/config"] = {"db": {"port": "not a port"}, "limits": {"workers": [1, "x"]}}
    with pytest.raises(SettingsError) as info:
        settings_class(client)()
    message = str(info.value)
    assert repr(client.key("/myservice/config/db/port")) in message
    assert repr(client.key("/myservice/config/limits/workers")) + " item [1]" in message


def test_watch_rebuilds_settings(client: EtcdMiddleware) -> None:
    client["/myservice/config"] = {"db": {"host": "a"}}
    cls = settings_class(client)
    seen: queue.Queue[Any] = queue.Queue()
    source = EtcdSettingsSource(cls, "/myservice/config", client=client)
    watch = source.watch(lambda old, new, changed: seen.put((old, new, changed)))
    try:
        old, settings, _ = seen.get(timeout=WAIT)
        assert old is None
        assert settings.db.host == "a"
        client["/myservice/config/db/host"] = "b"
        old, settings, changed = seen.get(timeout=WAIT)
        assert (old.db.host, settings.db.host, changed) == ("a", "b", ["db.host"])
    finally:
        watch.stop()


def test_old_and_new_import_paths_are_the_same_class() -> None:
    from link.etcd.adapters.pydantic import EtcdSettingsSource as New

    assert New is EtcdSettingsSource


def test_field_constraints_name_the_etcd_key(client: EtcdMiddleware) -> None:
    class Limited(BaseSettings):
        port: int = Field(default=1, gt=0)

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource, **kw: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (EtcdSettingsSource(settings_cls, "/c", client=client),)

    client["/c"] = {"port": -1}
    with pytest.raises(SettingsError, match=repr(client.key("/c/port"))):
        Limited()
