"""The configuration cache file: atomic 0600 writes, exact round trips, corrupt or
foreign files refused by name, and boots from it while etcd cannot be reached."""

import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from b3j0f.conf import Configurable, Parameter, category
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from link.etcd import EtcdConnectionFailed, EtcdMiddleware
from link.etcd.adapters.cache import CacheFile, CacheFileError
from link.etcd.driver import EtcdConfDriver
from link.etcd.pydantic_source import EtcdSettingsSource

from .apis import connection

KEYS = ["/p/config/defaults", "/p/config/prod"]
LAYERS = ["/config/defaults", "/config/prod"]


def dead_endpoint() -> str:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# -- the file -------------------------------------------------------------------


def test_save_is_0600_and_loads_back_exactly(tmp_path: Path) -> None:
    cache = CacheFile(tmp_path / "config.json")
    layers = [[("/p/config/defaults/a", b"1")], [("/p/config/prod/\udcff", b"\xff\x00")]]
    cache.save(KEYS, 42, layers)
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    revision, saved_at, loaded = CacheFile(cache.path).load(KEYS)
    assert (revision, loaded) == (42, layers)
    assert saved_at > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temporary left


def test_entries_for_other_keys_are_kept(tmp_path: Path) -> None:
    cache = CacheFile(tmp_path / "config.json")
    cache.save(["/a"], 1, [[("/a/x", b"1")]])
    cache.save(["/b"], 2, [[("/b/y", b"2")]])
    assert CacheFile(cache.path).load(["/a"])[0] == 1
    assert CacheFile(cache.path).load(["/b"])[0] == 2


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is corrupt"),
        (b'{"some": "other tool"}', "is not a link.etcd configuration cache file"),
        (
            b'{"format": "link.etcd configuration cache", "version": 99, "entries": {}}',
            "has version 99",
        ),
        (
            b'{"format": "link.etcd configuration cache", "version": 1, "entries": '
            b'{"/p/config/defaults\\n/p/config/prod": {"keys": [], "layers": "x"}}}',
            "is corrupt",
        ),
    ],
)
def test_a_corrupt_or_foreign_file_is_refused_by_name(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(CacheFileError, match=says) as info:
        CacheFile(path).load(KEYS)
    assert str(path) in str(info.value)


def test_a_file_for_other_keys_is_refused(tmp_path: Path) -> None:
    cache = CacheFile(tmp_path / "config.json")
    cache.save(["/other/app"], 3, [[]])
    with pytest.raises(CacheFileError, match="holds no configuration for") as info:
        CacheFile(cache.path).load(KEYS)
    assert str(cache.path) in str(info.value)
    assert "/other/app" in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CacheFileError, match="no configuration cache file") as info:
        CacheFile(tmp_path / "absent.json").load(KEYS)
    assert str(tmp_path / "absent.json") in str(info.value)


# -- booting from it ----------------------------------------------------------------


def settings_class(**source_settings: Any) -> type[BaseSettings]:
    class ServiceSettings(BaseSettings):
        port: int = 8080
        host: str = "localhost"

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource, **kw: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (EtcdSettingsSource(settings_cls, LAYERS, **source_settings),)

    return ServiceSettings


def test_pydantic_boots_from_the_cache_when_etcd_is_unreachable(
    etcd_server: Any, etcd_prefix: str, api: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    up: dict[str, Any] = {
        "endpoints": [etcd_server.endpoint],
        **connection(api),
        "prefix": etcd_prefix,
    }
    with EtcdMiddleware(**up) as client:
        client["/config/defaults"] = {"port": 1, "host": "h"}
        client["/config/prod"] = {"port": 2}
    up["cache_file"] = tmp_path / "config.json"
    source = EtcdSettingsSource(settings_class(**up), LAYERS, **up)
    settings: Any = source.load()
    assert (settings.port, source.stale) == (2, False)
    down = {**up, "endpoints": [dead_endpoint()], "read_timeout": 1}
    booted = EtcdSettingsSource(settings_class(**down), LAYERS, **down)
    with caplog.at_level(logging.WARNING):
        settings = booted.load()
    assert (settings.port, settings.host) == (2, "h")
    assert booted.stale is True
    assert booted.revision == source.revision
    assert booted.saved_at is not None
    assert str(up["cache_file"]) in caplog.text
    assert "stale until etcd answers" in caplog.text
    assert booted.explain() == {"port": "etcd /config/prod", "host": "etcd /config/defaults"}


def test_a_cache_that_cannot_be_written_is_a_warning(
    etcd_server: Any, etcd_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings: dict[str, Any] = {
        "endpoints": [etcd_server.endpoint],
        "prefix": etcd_prefix,
        "cache_file": tmp_path / "no such directory" / "config.json",
    }
    with EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix) as client:
        client["/config/prod/port"] = 9
    source = EtcdSettingsSource(settings_class(**settings), LAYERS, **settings)
    with caplog.at_level(logging.WARNING):
        settings_read: Any = source.load()
    assert settings_read.port == 9
    assert source.stale is False
    assert "cannot write the configuration cache file" in caplog.text
    assert str(settings["cache_file"]) in caplog.text


def test_without_a_cache_an_unreachable_cluster_raises(etcd_prefix: str) -> None:
    source = EtcdSettingsSource(
        settings_class(), LAYERS, endpoints=[dead_endpoint()], read_timeout=1, prefix=etcd_prefix
    )
    with pytest.raises(EtcdConnectionFailed):
        source.load()


def test_an_unusable_cache_is_an_error_naming_it(etcd_prefix: str, tmp_path: Path) -> None:
    cache_file = tmp_path / "config.json"
    cache_file.write_text(json.dumps({"format": "something else"}))
    source = EtcdSettingsSource(
        settings_class(),
        LAYERS,
        endpoints=[dead_endpoint()],
        read_timeout=1,
        prefix=etcd_prefix,
        cache_file=cache_file,
    )
    with pytest.raises(CacheFileError, match=str(cache_file)) as info:
        source.load()
    assert isinstance(info.value.__cause__, EtcdConnectionFailed)


def test_b3j0f_boots_from_the_cache(etcd_server: Any, etcd_prefix: str, tmp_path: Path) -> None:
    cache_file = tmp_path / "config.json"
    up: dict[str, Any] = {
        "endpoints": [etcd_server.endpoint],
        "prefix": etcd_prefix,
        "cache_file": cache_file,
    }
    driver = EtcdConfDriver(layers=LAYERS, **up)
    driver.client["/config/prod/svc.conf"] = {"DB": {"port": "6000"}}

    def service(driver: EtcdConfDriver) -> Any:
        @Configurable(
            paths="svc.conf",
            conf=category("DB", Parameter(name="port", ptype=int)),
            drivers=[driver],
        )
        class Service:
            pass

        return Service()

    assert service(driver).port == 6000
    assert driver.stale is False
    down = EtcdConfDriver(layers=LAYERS, **{**up, "endpoints": [dead_endpoint()]}, read_timeout=1)
    assert service(down).port == 6000
    reading = down.reading("svc.conf")
    assert down.stale is True
    assert reading is not None
    assert reading.revision == driver.revision
