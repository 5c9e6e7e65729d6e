"""EtcdConfDriver with b3j0f.conf, against a real etcd, on both APIs."""

import queue
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from b3j0f.conf import Configurable, Parameter, category
from b3j0f.conf.model.param import BOOL

from link.etcd import EtcdConnectionFailed, EtcdMiddleware
from link.etcd.driver import EtcdConfDriver
from link.etcd.testing.metrics import request_count

from .apis import connection

WAIT = 10.0


def test_tutorial_verbatim_in_a_fresh_interpreter(etcd_server: Any, etcd_prefix: str) -> None:
    """The tutorial order: b3j0f first, then the driver; configuration from etcd."""
    seed = EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix)
    seed["/myproject/myconfigurable.conf"] = {"MYCONF": {"myparam": "myvalue"}}
    script = textwrap.dedent(
        """
        from b3j0f.conf import Configurable, category, Parameter
        from link.etcd.driver import EtcdConfDriver

        @Configurable(
            paths='myproject/myconfigurable.conf',
            conf=category(
                'MYCONF',
                Parameter(name='myparam')
            ),
            drivers=[EtcdConfDriver()]
        )
        class MyConfigurable(object):
            pass

        obj = MyConfigurable()
        print(obj.myparam)
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "LINK_ETCD_ENDPOINTS": etcd_server.endpoint,
        "LINK_ETCD_PREFIX": etcd_prefix,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "myvalue"


def _doc_blocks(*needles: str) -> str:
    """The ```python blocks of docs/adapters.md holding each needle, dedented, in order."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "adapters.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    found = [next(textwrap.dedent(b) for b in blocks if needle in b) for needle in needles]
    return "\n".join(found)


def test_docs_tutorial_then_write_back(etcd_server: Any, etcd_prefix: str) -> None:
    """docs/adapters.md's tutorial and its write-back example, as written, in a fresh
    interpreter: the value set is stored, the other parameters are left alone."""
    seed = EtcdMiddleware(endpoints=[etcd_server.endpoint], prefix=etcd_prefix)
    seed["/myproject/myconfigurable.conf"] = {"MYCONF": {"myparam": "myvalue", "other": 1}}
    script = _doc_blocks("@Configurable(", "driver.setconf(")
    env = {
        "PATH": "/usr/bin:/bin",
        "LINK_ETCD_ENDPOINTS": etcd_server.endpoint,
        "LINK_ETCD_PREFIX": etcd_prefix,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "myvalue"
    assert seed["/myproject/myconfigurable.conf"] == {"MYCONF": {"myparam": "newvalue", "other": 1}}


@pytest.fixture
def driver(etcd_server: Any, etcd_prefix: str, api: str) -> EtcdConfDriver:
    settings: dict[str, Any] = {"endpoints": [etcd_server.endpoint], **connection(api)}
    return EtcdConfDriver(prefix=etcd_prefix, **settings)


def _configurable(driver: EtcdConfDriver) -> type:
    @Configurable(
        paths="svc/app.conf",
        conf=category(
            "DB",
            Parameter(name="host", ptype=str),
            Parameter(name="port", ptype=int),
            Parameter(name="debug", ptype=BOOL),
            Parameter(name="ratio", ptype=float),
        ),
        drivers=[driver],
    )
    class Service:
        pass

    return Service


def test_typed_parameters(driver: EtcdConfDriver) -> None:
    driver.client["/svc/app.conf"] = {
        "DB": {"host": "db1", "port": 5432, "debug": True, "ratio": 0.5}
    }
    service = _configurable(driver)()
    assert (service.host, service.port, service.debug, service.ratio) == ("db1", 5432, True, 0.5)


def test_string_values_typed_by_ptype(driver: EtcdConfDriver, etcd_server: Any) -> None:
    driver.client["/svc/app.conf"] = {"DB": {"port": "6543", "debug": "false"}}
    service = _configurable(driver)()
    assert service.port == 6543
    assert service.debug is False


def test_applyconfiguration_picks_up_changes(driver: EtcdConfDriver) -> None:
    driver.client["/svc/app.conf"] = {"DB": {"host": "a"}}
    cls = _configurable(driver)
    service = cls()
    assert service.host == "a"
    driver.client["/svc/app.conf/DB/host"] = "b"
    Configurable.get_annotations(service)[0].applyconfiguration(targets=[service])
    assert service.host == "b"


def test_write_back(driver: EtcdConfDriver) -> None:
    driver.client["/svc/app.conf"] = {"DB": {"host": "a"}, "OTHER": {"keep": 1}}
    cls = _configurable(driver)
    configurable = Configurable.get_annotations(cls)[0]
    configurable.conf["DB"]["port"].value = 7000
    driver.setconf(configurable.conf, "svc/app.conf")
    stored = driver.client["/svc/app.conf"]
    assert stored["DB"]["port"] == 7000
    assert stored["OTHER"] == {"keep": 1}


def test_missing_path_means_no_configuration(driver: EtcdConfDriver) -> None:
    assert driver.getconf("svc/nothing.conf") is None
    service = _configurable(driver)()  # svc/app.conf is not stored either
    # b3j0f then sets every declared Parameter to its default value (None here)
    assert vars(service) == {"host": None, "port": None, "debug": None, "ratio": None}

    @Configurable(
        paths="svc/nothing.conf",
        conf=category("DB", Parameter(name="port", ptype=int, value=5432)),
        drivers=[driver],
    )
    class WithDefault:
        pass

    defaulted: Any = WithDefault()
    assert defaulted.port == 5432


def test_old_and_new_import_paths_are_the_same_class() -> None:
    from link.etcd.adapters.b3j0f import EtcdConfDriver as New

    assert New is EtcdConfDriver
    assert EtcdConfDriver.__module__ == "link.etcd.adapters.b3j0f"


def test_b3j0f_finds_the_driver_by_its_old_path() -> None:
    from b3j0f.utils.path import lookup

    assert lookup("link.etcd.driver.EtcdConfDriver") is EtcdConfDriver
    assert lookup("link.etcd.adapters.b3j0f.EtcdConfDriver") is EtcdConfDriver


def test_one_read_request_per_load(driver: EtcdConfDriver, etcd_server: Any, api: str) -> None:
    driver.client["/svc/app.conf"] = {"DB": {"host": "h", "port": 1, "debug": False}}
    cls = _configurable(driver)  # decorating applies the configuration once too
    before = request_count(etcd_server.endpoint, connection(api)["api"])
    assert before is not None
    assert cls().host == "h"
    assert (
        request_count(etcd_server.endpoint, connection(api)["api"]) == before + 1
    )  # counted by the server


def test_live_reconfiguration(driver: EtcdConfDriver) -> None:
    driver.client["/svc/app.conf"] = {"DB": {"host": "a"}}
    service = _configurable(driver)()
    changed: queue.Queue[Any] = queue.Queue()
    watches = driver.reconfigure_on_change(service)
    assert len(watches) == 1
    extra = driver.watch("svc/app.conf", lambda tree, rev: changed.put(tree))
    try:
        changed.get(timeout=WAIT)  # the current value, delivered at once
        driver.client["/svc/app.conf/DB/host"] = "b"
        tree = changed.get(timeout=WAIT)
        while tree["DB"]["host"] != "b":
            tree = changed.get(timeout=WAIT)
        deadline = time.monotonic() + WAIT  # the other watch thread applies it
        while service.host != "b" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.host == "b"
    finally:
        extra.stop()
        for w in watches:
            w.stop()


def test_no_connection_at_construction() -> None:
    driver = EtcdConfDriver(endpoints=["127.0.0.1:9"], read_timeout=1)
    assert driver._client is None
    with pytest.raises(EtcdConnectionFailed):
        driver.getconf("svc/app.conf")
