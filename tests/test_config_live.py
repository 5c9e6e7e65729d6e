"""Layered configuration, validated reloads and provenance, for both adapters
(pydantic-settings source, b3j0f.conf driver), against a real etcd on every API."""

import logging
import queue
import time
from typing import Any

import pytest
from b3j0f.conf import Configurable, Parameter, category
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from link.etcd import EtcdInvalidTree, EtcdMiddleware
from link.etcd.adapters.layers import reading_of
from link.etcd.adapters.live import InvalidConfiguration, stale_since
from link.etcd.driver import EtcdConfDriver
from link.etcd.pydantic_source import EtcdSettingsSource
from link.etcd.testing import request_count

from .apis import connection

WAIT = 10.0
LAYERS = ["/config/defaults", "/config/prod", "/config/prod/web-1"]


class Database(BaseModel):
    host: str = "localhost"
    port: int = Field(default=5432, gt=0, lt=65536)


def settings_class(client: EtcdMiddleware, layers: list[str] = LAYERS) -> type[BaseSettings]:
    class ServiceSettings(BaseSettings):
        db: Database = Database()
        debug: bool = False
        workers: int = 1

        model_config = {"env_prefix": "SVC_"}

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, EtcdSettingsSource(settings_cls, layers, client)

    return ServiceSettings


def seed(client: EtcdMiddleware) -> None:
    client["/config/defaults"] = {"db": {"host": "localhost", "port": 5432}, "workers": 2}
    client["/config/prod"] = {"db": {"host": "db.prod"}, "debug": False}
    client["/config/prod/web-1"] = {"debug": True}


class Recorder:
    """on_change / on_error callbacks that queue what they get."""

    def __init__(self) -> None:
        self.changes: queue.Queue[tuple[Any, Any, list[str]]] = queue.Queue()
        self.errors: queue.Queue[InvalidConfiguration] = queue.Queue()

    def on_change(self, old: Any, new: Any, changed: list[str]) -> None:
        self.changes.put((old, new, changed))

    def on_error(self, error: InvalidConfiguration) -> None:
        self.errors.put(error)


# -- pydantic-settings ----------------------------------------------------------


def test_layers_merge_key_by_key_with_provenance(
    client: EtcdMiddleware, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(client)
    monkeypatch.setenv("SVC_WORKERS", "8")
    cls = settings_class(client)
    source = EtcdSettingsSource(cls, LAYERS, client)
    settings: Any = source.load()
    assert settings.db == Database(host="db.prod", port=5432)
    assert settings.debug is True
    assert settings.workers == 8
    assert source.explain() == {
        "db.host": "etcd /config/prod",
        "db.port": "etcd /config/defaults",
        "debug": "etcd /config/prod/web-1",
        "workers": "EnvSettingsSource",
    }
    assert source.revision > 0
    assert source.stale is False


def test_a_nested_layer_is_not_part_of_the_outer_one(client: EtcdMiddleware) -> None:
    seed(client)
    source = EtcdSettingsSource(settings_class(client), LAYERS, client)
    source.load()
    reading = source.reading
    assert reading is not None
    assert "web-1" not in reading.layers[1].tree  # /config/prod without /config/prod/web-1
    assert "web-1" not in reading.tree


def test_v3_reads_all_layers_in_one_txn(v3: EtcdMiddleware, etcd_server: Any) -> None:
    seed(v3)
    source = EtcdSettingsSource(settings_class(v3), LAYERS, v3)
    before = request_count(etcd_server.endpoint, "v3")
    source.load()  # the settings class makes a source of its own: the reading is shared
    assert request_count(etcd_server.endpoint, "v3") == (before or 0) + 1


def test_invalid_change_keeps_the_last_good_settings_and_reports_once(
    client: EtcdMiddleware, caplog: pytest.LogCaptureFixture
) -> None:
    seed(client)
    source = EtcdSettingsSource(settings_class(client), LAYERS, client)
    seen = Recorder()
    live = source.watch(seen.on_change, on_error=seen.on_error)
    try:
        old, first, changed = seen.changes.get(timeout=WAIT)
        assert old is None
        assert first.db.port == 5432
        assert "db.port" in changed
        with caplog.at_level(logging.WARNING, logger="link.etcd.adapters.live"):
            client["/config/prod/web-1/db/port"] = "not a port"
            error = seen.errors.get(timeout=WAIT)
            client["/config/prod/web-1/note"] = "unrelated to the model, same invalid port"
            client["/config/prod/web-1/db/port"] = 70000  # invalid too, differently
            second = seen.errors.get(timeout=WAIT)
        key = repr(client.key("/config/prod/web-1/db/port"))
        assert key in str(error)
        assert "'not a port'" in str(error)
        assert error.problems == [p for p in error.problems if key in p]
        assert "70000" in str(second)
        assert seen.errors.empty()  # the unrelated change was not reported again
        assert key in caplog.text
        assert "not a port" in caplog.text
        assert source.settings is not None
        assert source.settings.db.port == 5432  # type: ignore[attr-defined]
        assert seen.changes.empty()
        client["/config/prod/web-1/db/port"] = 6543
        old, new, changed = seen.changes.get(timeout=WAIT)
        assert (old.db.port, new.db.port, changed) == (5432, 6543, ["db.port"])
        assert live.current is new
        assert source.explain()["db.port"] == "etcd /config/prod/web-1"
    finally:
        live.stop()


def count_reads(source: EtcdSettingsSource) -> list[int]:
    """Record each read of the layers (a list that grows by one per read)."""
    reads: list[int] = []
    read = source.tree.read

    def counted() -> Any:
        reads.append(1)
        return read()

    source.tree.read = counted  # type: ignore[method-assign]
    return reads


def test_a_txn_of_many_keys_gives_one_reload(v3: EtcdMiddleware) -> None:
    seed(v3)
    source = EtcdSettingsSource(settings_class(v3), LAYERS, v3)
    seen = Recorder()
    live = source.watch(seen.on_change)
    try:
        seen.changes.get(timeout=WAIT)
        reads = count_reads(source)
        v3.update(
            {
                "/config/defaults/workers": 3,
                "/config/prod/db/host": "db2",
                "/config/prod/web-1/debug": False,
            }
        )
        _, _, changed = seen.changes.get(timeout=WAIT)
        assert changed == ["db.host", "debug", "workers"]
        v3["/config/prod/web-1/workers"] = 5  # a later change: the watch is past the txn
        _, last, changed = seen.changes.get(timeout=WAIT)
        assert changed == ["workers"]
        assert last.workers == 5
        assert len(reads) == 2  # one for the txn of three keys, one for the last change
    finally:
        live.stop()


def test_a_change_outside_the_layers_is_not_read(client: EtcdMiddleware) -> None:
    seed(client)
    source = EtcdSettingsSource(settings_class(client), LAYERS, client)
    seen = Recorder()
    live = source.watch(seen.on_change)
    try:
        seen.changes.get(timeout=WAIT)
        reads = count_reads(source)
        client["/config/staging/workers"] = 9  # below the watched /config, in no layer
        client["/config/prod/web-1/workers"] = 4
        _, new, changed = seen.changes.get(timeout=WAIT)
        assert new.workers == 4
        assert changed == ["workers"]
        assert len(reads) == 1
    finally:
        live.stop()


# -- b3j0f.conf -------------------------------------------------------------------


@pytest.fixture
def driver(etcd_server: Any, etcd_prefix: str, api: str) -> EtcdConfDriver:
    settings: dict[str, Any] = {"endpoints": [etcd_server.endpoint], **connection(api)}
    layers = ["/config/defaults", "/config/prod"]
    return EtcdConfDriver(layers=layers, prefix=etcd_prefix, **settings)


def configurable_class(driver: EtcdConfDriver) -> type:
    @Configurable(
        paths="svc/app.conf",
        conf=category("DB", Parameter(name="host", ptype=str), Parameter(name="port", ptype=int)),
        drivers=[driver],
    )
    class Service:
        pass

    return Service


def test_b3j0f_layers_and_explain(driver: EtcdConfDriver) -> None:
    driver.client["/config/defaults/svc/app.conf"] = {"DB": {"host": "a", "port": 1}}
    driver.client["/config/prod/svc/app.conf"] = {"DB": {"port": "2"}}
    service = configurable_class(driver)()
    assert (service.host, service.port) == ("a", 2)
    assert driver.explain("svc/app.conf") == {
        "DB.host": "etcd /config/defaults/svc/app.conf",
        "DB.port": "etcd /config/prod/svc/app.conf",
    }
    assert driver.revision > 0
    assert driver.stale is False


def test_b3j0f_invalid_change_keeps_the_last_good_configuration(driver: EtcdConfDriver) -> None:
    driver.client["/config/defaults/svc/app.conf"] = {"DB": {"host": "a", "port": 1}}
    service = configurable_class(driver)()
    seen = Recorder()
    lives = driver.reconfigure_on_change(service, seen.on_change, seen.on_error)
    try:
        assert len(lives) == 1
        old, new, _ = seen.changes.get(timeout=WAIT)
        assert old is None
        assert new["DB"] == {"host": "a", "port": 1}
        driver.client["/config/prod/svc/app.conf/DB/port"] = "eighty"
        error = seen.errors.get(timeout=WAIT)
        key = repr(driver.client.key("/config/prod/svc/app.conf/DB/port"))
        assert key in str(error)
        assert "'eighty'" in str(error)
        assert "invalid literal" in str(error)
        assert service.port == 1
        driver.client["/config/prod/svc/app.conf/DB/port"] = "80"
        old, new, changed = seen.changes.get(timeout=WAIT)
        assert (old["DB"]["port"], new["DB"]["port"], changed) == (1, 80, ["DB.port"])
        assert service.port == 80
    finally:
        for live in lives:
            live.stop()


def test_b3j0f_setconf_refuses_a_conf_without_values(driver: EtcdConfDriver) -> None:
    driver.client["/config/prod/svc/app.conf"] = {"DB": {"host": "kept"}}
    configurable = Configurable.get_annotations(configurable_class(driver))[0]
    with pytest.raises(EtcdInvalidTree, match="no parameter has a value"):
        driver.setconf(configurable.conf, "svc/app.conf")
    assert driver.client["/config/prod/svc/app.conf"] == {"DB": {"host": "kept"}}
    configurable.conf["DB"]["port"].value = 7000
    driver.setconf(configurable.conf, "svc/app.conf")  # written to the last layer
    assert driver.client["/config/prod/svc/app.conf"] == {"DB": {"host": "kept", "port": 7000}}


def test_an_error_of_the_whole_model_is_reported_too(v3: EtcdMiddleware) -> None:
    from pydantic import model_validator

    class Pool(BaseSettings):
        low: int = 1
        high: int = 2

        @model_validator(mode="after")
        def ordered(self) -> "Pool":
            if self.low > self.high:
                raise ValueError("low must not exceed high")
            return self

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *s: Any, **k: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (EtcdSettingsSource(settings_cls, "/pool", v3),)

    v3["/pool"] = {"low": 1, "high": 5}
    seen = Recorder()
    live = EtcdSettingsSource(Pool, "/pool", v3).watch(seen.on_change, on_error=seen.on_error)
    try:
        seen.changes.get(timeout=WAIT)
        v3["/pool/low"] = 9
        error = seen.errors.get(timeout=WAIT)
        assert error.problems == ["the settings as a whole: Value error, low must not exceed high"]
        assert live.current is not None
        assert live.current.low == 1  # type: ignore[attr-defined]
    finally:
        live.stop()


# -- staleness ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["retry_seconds", "check_seconds"])
@pytest.mark.parametrize("seconds", [0, -1.0, float("nan")])
def test_a_bad_period_is_refused_before_anything_runs(
    v3: EtcdMiddleware, name: str, seconds: float
) -> None:
    seed(v3)
    source = EtcdSettingsSource(settings_class(v3), LAYERS, v3)
    seen = Recorder()
    period: dict[str, Any] = {name: seconds}
    with pytest.raises(ValueError, match=f"{name} must be a positive number of seconds"):
        source.watch(seen.on_change, **period)
    assert seen.changes.empty()
    assert source.settings is None


def test_a_quiet_configuration_is_read_every_check_seconds(v3: EtcdMiddleware) -> None:
    seed(v3)
    source = EtcdSettingsSource(settings_class(v3), LAYERS, v3)
    seen = Recorder()
    live = source.watch(seen.on_change, check_seconds=0.1)
    try:
        seen.changes.get(timeout=WAIT)
        reads = count_reads(source)
        deadline = time.monotonic() + WAIT
        while len(reads) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(reads) >= 3  # nothing changed, yet etcd is asked
        assert seen.changes.empty()  # the same values: no on_change
        assert (live.stale, source.stale, source.stale_since) == (False, False, None)
    finally:
        live.stop()


def test_stale_since_without_a_watch() -> None:
    current = reading_of(["/c"], ["/p/c"], 7, [[("/p/c/a", b'"1"')]])
    cached = reading_of(["/c"], ["/p/c"], 7, [[("/p/c/a", b'"1"')]], stale=True, saved_at=5.0)
    assert stale_since(None, None) is None
    assert stale_since(None, current) is None
    assert stale_since(None, cached) == 5.0
