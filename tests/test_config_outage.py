"""A service across an etcd outage, in separate processes (v3 over gRPC and v2):
etcd up → the service runs and saves its cache; etcd stopped → a new process
boots from the cache and says so; etcd started → it reloads the current
configuration, and later changes arrive.  The time from etcd answering again to
the configuration being current is measured and printed (not asserted).

Then, in this process on every API, etcd going down *after* start-up: both
adapters keep their configuration and say it is stale (once in the log) until
etcd answers again."""

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from link.etcd import EtcdMiddleware
from link.etcd.driver import EtcdConfDriver
from link.etcd.pydantic_source import EtcdSettingsSource
from link.etcd.testing import EtcdServer

from .apis import APIS, connection
from .test_config_cache import LAYERS, settings_class
from .test_config_live import configurable_class

WAIT = 20.0
#: The service's seconds between reads while etcd is unreachable (the default is
#: 1.0; shorter here so the test is quick).
RETRY_SECONDS = os.environ.get("LINK_ETCD_TEST_RETRY_SECONDS", "0.1")

SERVICE = textwrap.dedent(
    """
    import json, sys, time
    from pydantic_settings import BaseSettings
    from link.etcd.pydantic_source import EtcdSettingsSource

    LAYERS = ["/config/defaults", "/config/prod"]
    SOURCE = dict(endpoints=[sys.argv[1]], api=sys.argv[2], cache_file=sys.argv[3],
                  read_timeout=1)

    class ServiceSettings(BaseSettings):
        port: int = 8080
        host: str = "localhost"

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            return init_settings, EtcdSettingsSource(settings_cls, LAYERS, **SOURCE)

    source = EtcdSettingsSource(ServiceSettings, LAYERS, **SOURCE)

    def report(old, new, changed):
        print(json.dumps({"port": new.port, "host": new.host, "stale": source.stale,
                          "stale_since": source.stale_since, "saved_at": source.saved_at,
                          "revision": source.revision, "changed": changed,
                          "at": time.time()}), flush=True)

    live = source.watch(report, retry_seconds=float(sys.argv[4]))
    sys.stdin.read()  # until the test closes stdin
    live.stop()
    """
)


class Service:
    """The service script in its own process; its JSON lines in a queue."""

    def __init__(self, script: Path, endpoint: str, api: str, cache: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), endpoint, api, str(cache), RETRY_SECONDS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self.stderr.extend, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(json.loads(line))

    def next(self) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            message = "no configuration line; stderr:\n" + "".join(self.stderr)
            raise AssertionError(message) from None

    def said(self, text: str) -> str:
        """All of stderr once it holds ``text`` (waiting up to WAIT seconds)."""
        deadline = time.monotonic() + WAIT
        while text not in "".join(self.stderr) and time.monotonic() < deadline:
            time.sleep(0.02)
        return "".join(self.stderr)

    def stop(self) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(timeout=WAIT)


@pytest.fixture
def server() -> Iterator[EtcdServer]:
    with EtcdServer(enable_v2=True) as server:
        yield server


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_boot_from_cache_during_an_outage_then_reload(
    server: EtcdServer, tmp_path: Path, api: str
) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    cache = tmp_path / "config.json"
    with EtcdMiddleware(endpoints=[server.endpoint], api=api, read_timeout=2) as client:
        client["/config/defaults"] = {"port": 1, "host": "h"}
        client["/config/prod"] = {"port": 2}

        first = Service(script, server.endpoint, api, cache)
        try:
            line = first.next()
            assert (line["port"], line["host"], line["stale"]) == (2, "h", False)
            assert (line["stale_since"], line["saved_at"]) == (None, None)
        finally:
            first.stop()
        assert cache.exists()

        server.kill(graceful=True)  # data kept; nothing answers on the port
        second = Service(script, server.endpoint, api, cache)
        try:
            line = second.next()
            assert (line["port"], line["stale"]) == (2, True)
            assert line["stale_since"] == line["saved_at"] < line["at"]  # when it was saved
            warning = second.said("stale until etcd answers")
            assert str(cache) in warning
            assert "stale until etcd answers" in warning
            assert "saved" in warning  # says since when

            started = time.time()
            server.start()  # returns when etcd's /health answers
            ready = time.time()
            line = second.next()
            assert (line["port"], line["stale"], line["stale_since"]) == (2, False, None)
            print(
                f"\n{api}: configuration current {line['at'] - started:.3f} s after etcd was "
                f"started, {line['at'] - ready:+.3f} s after its /health answered"
            )

            client["/config/prod/port"] = 3
            line = second.next()
            assert (line["port"], line["stale"], line["changed"]) == (3, False, ["port"])

            server.kill(graceful=True)  # etcd down later: the service keeps port 3
            server.start()
            written = time.time()
            client["/config/prod/port"] = 4  # the watch reconnects and delivers it
            line = second.next()
            assert (line["port"], line["stale"]) == (4, False)
            print(f"{api}: after a restart, a change arrived {line['at'] - written:.3f} s later")
        finally:
            second.stop()


def test_the_watched_member_hangs(tmp_path: Path) -> None:
    """A 3-member cluster; the member the service is on is stopped (SIGSTOP): the
    settings in use stay, a change written through another member arrives (v3)."""
    from link.etcd.testing import EtcdCluster

    with EtcdCluster(3) as cluster:
        endpoints = list(cluster.endpoints)
        settings: dict[str, Any] = {"endpoints": endpoints, "read_timeout": 1}

        class ServiceSettings(BaseSettings):
            port: int = 0

            @classmethod
            def settings_customise_sources(
                cls, settings_cls: type[BaseSettings], *s: Any, **k: Any
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (EtcdSettingsSource(settings_cls, "/config", **settings),)

        # the writer waits out an election: the stopped member may be the leader
        with EtcdMiddleware(endpoints=endpoints[1:], read_timeout=5) as writer:
            writer["/config"] = {"port": 1}
            source = EtcdSettingsSource(ServiceSettings, "/config", **settings)
            seen: queue.Queue[tuple[float, Any]] = queue.Queue()
            live = source.watch(lambda old, new, changed: seen.put((time.time(), new)))
            member = cluster.members[0]
            try:
                assert seen.get(timeout=WAIT)[1].port == 1
                assert member.pid is not None
                os.kill(member.pid, signal.SIGSTOP)
                written = time.time()
                writer["/config/port"] = 2
                at, new = seen.get(timeout=WAIT)
                assert new.port == 2
                assert live.current is new
                print(f"\nv3: change current {at - written:.2f} s after it was written")
            finally:
                if member.pid is not None:
                    os.kill(member.pid, signal.SIGCONT)
                live.stop()


# -- etcd down after start-up, in this process ------------------------------------

#: Short, so that the tests are quick (the defaults are 1 s and 10 s).
RETRY, CHECK = 0.1, 0.2
LOGGER = "link.etcd.adapters.live"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {WAIT} s")
        time.sleep(0.02)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


@pytest.mark.parametrize("api", APIS)
def test_settings_are_stale_while_etcd_is_down_after_start(
    server: EtcdServer, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings: dict[str, Any] = {
        "endpoints": [server.endpoint],
        "read_timeout": 1,
        **connection(api),
    }
    changes: queue.Queue[tuple[Any, list[str]]] = queue.Queue()
    with EtcdMiddleware(**settings) as writer:
        writer["/config/defaults"] = {"port": 1, "host": "h"}
        source = EtcdSettingsSource(settings_class(**settings), LAYERS, **settings)
        caplog.set_level(logging.INFO, logger=LOGGER)
        live = source.watch(
            lambda old, new, changed: changes.put((new, changed)),
            retry_seconds=RETRY,
            check_seconds=CHECK,
        )
        try:
            assert changes.get(timeout=WAIT)[0].port == 1
            assert (source.stale, source.stale_since, live.stale) == (False, None, False)

            killed = time.time()
            server.kill()  # a crash; nothing changes in the layers meanwhile
            wait_until(lambda: source.stale, "stale")
            noticed = time.time()
            since = source.stale_since
            assert live.stale
            assert since is not None
            assert killed - CHECK - 1 <= since <= noticed  # the last read before the outage
            assert source.settings is not None
            assert source.settings.port == 1  # type: ignore[attr-defined]  # kept
            print(f"\n{api}: stale {noticed - killed:.2f} s after etcd was killed")
            time.sleep(10 * RETRY)  # reads keep failing: still one warning, one line
            (warning,) = messages(caplog, "cannot be reached")
            assert warning.levelno == logging.WARNING
            assert server.endpoint.split("//")[-1] in warning.getMessage()
            assert "stale until etcd answers" in warning.getMessage()
            assert source.stale_since == since

            server.start()  # same data, same port
            wait_until(lambda: not source.stale, "current again")
            assert source.stale_since is None
            (back,) = messages(caplog, "etcd answers again")
            assert back.levelno == logging.INFO
            assert changes.empty()  # the same values: no on_change

            writer["/config/prod/port"] = 2  # written after the restart: it arrives
            new, changed = changes.get(timeout=WAIT)
            assert (new.port, changed, source.stale) == (2, ["port"], False)
        finally:
            live.stop()
        assert not live.running


@pytest.mark.parametrize("api", ["v3-grpc", "v2"])
def test_b3j0f_driver_is_stale_while_etcd_is_down_after_start(
    server: EtcdServer, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings: dict[str, Any] = {
        "endpoints": [server.endpoint],
        "read_timeout": 1,
        **connection(api),
    }
    driver = EtcdConfDriver(layers=LAYERS, **settings)
    driver.client["/config/defaults/svc/app.conf"] = {"DB": {"host": "a", "port": 1}}

    service: Any = configurable_class(driver)()
    changes: queue.Queue[list[str]] = queue.Queue()
    caplog.set_level(logging.INFO, logger=LOGGER)
    (live,) = driver.reconfigure_on_change(
        service,
        lambda old, new, changed: changes.put(changed),
        retry_seconds=RETRY,
        check_seconds=CHECK,
    )
    try:
        changes.get(timeout=WAIT)
        assert (driver.stale, driver.stale_since) == (False, None)
        server.kill(graceful=True)
        wait_until(lambda: driver.stale, "stale")
        assert driver.stale_since is not None
        assert driver.stale_since == live.stale_since
        assert service.port == 1
        server.start()
        wait_until(lambda: not driver.stale, "current again")
        assert driver.stale_since is None
        assert len(messages(caplog, "cannot be reached")) == 1
        with EtcdMiddleware(**settings) as writer:  # a client that never saw the outage
            writer["/config/prod/svc/app.conf/DB/port"] = "2"
        assert changes.get(timeout=WAIT) == ["DB.port"]
        assert service.port == 2
    finally:
        live.stop()


def test_stop_while_etcd_is_down(server: EtcdServer) -> None:
    settings: dict[str, Any] = {"endpoints": [server.endpoint], "read_timeout": 1}
    with EtcdMiddleware(**settings) as writer:
        writer["/config/defaults"] = {"port": 1}
    source = EtcdSettingsSource(settings_class(**settings), LAYERS, **settings)
    live = source.watch(retry_seconds=RETRY, check_seconds=CHECK)
    try:
        server.kill()
        wait_until(lambda: live.stale, "stale")
    finally:
        live.stop()
    assert not live.running
    assert live.stale  # nothing confirmed it since
