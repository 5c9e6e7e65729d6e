"""Unit tests of link.etcd.settings (no etcd server needed)."""

from __future__ import annotations

import configparser
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.etcd.errors import EtcdSettingsError
from link.etcd.settings import (
    CONF_PATH,
    FIELD_NAMES,
    EtcdSettings,
    conf_search_path,
    load_settings,
    mask_uri,
    parse_uri,
    read_conf_file,
    read_environ,
)

SHIPPED_CONF = Path(__file__).resolve().parents[1] / "etc" / "link" / "etcd" / "middleware.conf"


def write_conf(directory: Path, body: str, section: str = "ETCD") -> Path:
    """Write ``directory/link/etcd/middleware.conf`` with ``body`` under ``[section]``."""
    path = directory / CONF_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[{section}]\n{body}\n" if section else body, encoding="utf-8")
    return path


def load(**kwargs: object) -> EtcdSettings:
    """load_settings isolated from the machine: no files, empty environment by default."""
    kwargs.setdefault("conf_files", [])
    kwargs.setdefault("environ", {})
    return load_settings(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# defaults and the dataclass
# --------------------------------------------------------------------------

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 2379,
    "protocol": "http",
    "srv_domain": None,
    "version_prefix": "/v2",
    "read_timeout": 5.0,
    "allow_redirect": True,
    "allow_reconnect": True,
    "cert": None,
    "ca_cert": None,
    "username": None,
    "password": None,
    "use_proxies": False,
    "expected_cluster_id": None,
    "per_host_pool_size": 10,
    "api": "v3",
    "endpoints": (),
    "prefix": "/",
    "cert_key": None,
    "max_txn_ops": 128,
    "max_request_bytes": 1572864,
    "transport": "grpc",
    "serializable_reads": False,
}


def test_defaults() -> None:
    assert dataclasses.asdict(EtcdSettings()) == DEFAULTS
    assert list(FIELD_NAMES) == list(DEFAULTS)


def test_load_without_any_source_gives_defaults() -> None:
    assert load() == EtcdSettings()


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EtcdSettings().port = 1  # type: ignore[misc]


def test_replace_coerces_validates_and_keeps_original() -> None:
    base = EtcdSettings()
    changed = base.replace(port="2380", allow_redirect="off")
    assert (changed.port, changed.allow_redirect) == (2380, False)
    assert base.port == 2379
    with pytest.raises(EtcdSettingsError, match=r"'port'.*70000"):
        base.replace(port=70000)
    with pytest.raises(EtcdSettingsError, match=r"hots.*valid names: host, port"):
        base.replace(hots="x")


# --------------------------------------------------------------------------
# priority
# --------------------------------------------------------------------------


def test_priority_file_later_file_env_uri_kwargs(tmp_path: Path) -> None:
    first = write_conf(
        tmp_path / "a", "host = first\nport = 1111\nprefix = /first\nread_timeout = 1\napi = v2"
    )
    second = write_conf(tmp_path / "b", "host = second\nport = 2222\nread_timeout = 2")
    environ = {"LINK_ETCD_PORT": "3333", "LINK_ETCD_READ_TIMEOUT": "3"}
    settings = load_settings(
        conf_files=[first, second], environ=environ, uri="etcd://urihost:4444", port=5555
    )
    assert settings.api == "v2"  # only in the first file
    assert settings.prefix == "/first"  # only in the first file
    assert settings.read_timeout == 3.0  # env beats both files
    assert settings.host == "urihost"  # uri beats files
    assert settings.port == 5555  # kwargs beat everything


@pytest.mark.parametrize("top", ["first", "second", "env", "uri", "kwarg"])
def test_each_level_beats_the_ones_below(tmp_path: Path, top: str) -> None:
    levels = ["first", "second", "env", "uri", "kwarg"]
    given = levels[: levels.index(top) + 1]
    files = [write_conf(tmp_path / name, f"host = {name}") for name in ("first", "second")]
    settings = load_settings(
        conf_files=[f for f, name in zip(files, levels, strict=False) if name in given],
        environ={"LINK_ETCD_HOST": "env"} if "env" in given else {},
        uri="etcd://uri" if "uri" in given else None,
        **({"host": "kwarg"} if "kwarg" in given else {}),
    )
    assert settings.host == top


def test_env_uri_sits_between_env_fields_and_explicit_uri() -> None:
    environ = {"LINK_ETCD_HOST": "envhost", "LINK_ETCD_URI": "etcd://bob:pw@urihost:1/app"}
    from_env = load(environ=environ)
    assert (from_env.host, from_env.port, from_env.username, from_env.prefix) == (
        "urihost",
        1,
        "bob",
        "/app",
    )
    # an explicit uri replaces $LINK_ETCD_URI wholesale: its credentials do not leak
    explicit = load(environ=environ, uri="etcd://other:2")
    assert (explicit.host, explicit.port, explicit.username, explicit.password) == (
        "other",
        2,
        None,
        None,
    )
    assert explicit.prefix == "/"


def test_uri_with_one_host_clears_lower_endpoints(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "endpoints = a:1, b:2")
    assert load(conf_files=[conf]).urls == ("http://a:1", "http://b:2")
    assert load(conf_files=[conf], uri="etcd://c:3").urls == ("http://c:3",)
    # a URI without host keeps them
    assert load(conf_files=[conf], uri="etcd:///app").urls == ("http://a:1", "http://b:2")


def test_empty_value_in_later_layer_unsets_optional(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"ca_cert = {SHIPPED_CONF}\nusername = bob")
    assert load(conf_files=[conf]).ca_cert == str(SHIPPED_CONF)
    settings = load(conf_files=[conf], environ={"LINK_ETCD_CA_CERT": ""})
    assert settings.ca_cert is None
    assert settings.username == "bob"


# --------------------------------------------------------------------------
# coercion
# --------------------------------------------------------------------------

COERCIONS = [
    ("port", "2380", 2380),
    ("port", " 12 ", 12),
    ("read_timeout", "2.5", 2.5),
    ("read_timeout", "3", 3.0),
    ("per_host_pool_size", "4", 4),
    ("max_txn_ops", "1000", 1000),
    ("max_request_bytes", "10485760", 10485760),
    ("api", "V2", "v2"),
    ("transport", "Gateway", "gateway"),
    ("protocol", "HTTPS", "https"),
    ("host", "[::1]", "::1"),
    ("host", "etcd.example.org", "etcd.example.org"),
    ("endpoints", "a:1, b:2\n  c", ("a:1", "b:2", "c")),
    ("endpoints", "a:1,b:2", ("a:1", "b:2")),
    ("endpoints", "", ()),
    ("prefix", "app/sub/", "/app/sub"),
    ("prefix", "//app//x", "/app/x"),
    ("prefix", "/", "/"),
    ("prefix", "", "/"),
    ("version_prefix", "v2/", "/v2"),
    ("ca_cert", "", None),
    ("ca_cert", str(SHIPPED_CONF), str(SHIPPED_CONF)),
    ("srv_domain", "example.org", "example.org"),
    ("expected_cluster_id", "", None),
]
BOOLEANS = [
    (word.upper() if i % 2 else word, value)
    for i, (word, value) in enumerate(configparser.ConfigParser.BOOLEAN_STATES.items())
]


@pytest.mark.parametrize(("name", "raw", "expected"), COERCIONS)
def test_coercion_in_file_env_and_kwargs(
    tmp_path: Path, name: str, raw: str, expected: object
) -> None:
    conf = write_conf(tmp_path, f"{name} = {raw}".replace("\n", "\n "))  # continuation lines
    from_file = read_conf_file(conf)[name]
    from_env = read_environ({f"LINK_ETCD_{name.upper()}": raw})[name]
    kwargs: dict[str, Any] = {name: raw}
    from_kwarg = getattr(EtcdSettings(**kwargs), name)
    for value in (from_file, from_env, from_kwarg):
        assert value == expected
        assert type(value) is type(expected)


@pytest.mark.parametrize(("word", "value"), BOOLEANS)
@pytest.mark.parametrize("name", ["allow_redirect", "allow_reconnect", "use_proxies"])
def test_boolean_words(tmp_path: Path, name: str, word: str, value: bool) -> None:
    conf = write_conf(tmp_path, f"{name} = {word}")
    assert read_conf_file(conf) == {name: value}
    assert read_environ({f"LINK_ETCD_{name.upper()}": word}) == {name: value}


def test_password_is_not_stripped() -> None:
    assert read_environ({"LINK_ETCD_PASSWORD": " pw "}) == {"password": " pw "}


def test_kwargs_accept_python_values() -> None:
    settings = load(read_timeout=2, endpoints=["a:1", "b"], allow_redirect=False)
    assert settings.read_timeout == 2.0
    assert isinstance(settings.read_timeout, float)
    assert settings.endpoints == ("a:1", "b")
    assert settings.allow_redirect is False


# --------------------------------------------------------------------------
# errors name their origin, key and value
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("port = abc", ["port", "'abc'", "integer"]),
        ("port = 0", ["port", "'0'", "1..65535"]),
        ("port = 65536", ["port", "'65536'"]),
        ("allow_redirect = maybe", ["allow_redirect", "'maybe'", "yes"]),
        ("read_timeout = soon", ["read_timeout", "'soon'"]),
        ("read_timeout = 0", ["read_timeout", "'0'", "> 0"]),
        ("read_timeout = nan", ["read_timeout", "'nan'", "finite"]),
        ("per_host_pool_size = -1", ["per_host_pool_size", "'-1'"]),
        ("max_txn_ops = 0", ["max_txn_ops", "'0'"]),
        ("max_request_bytes = 1.5", ["max_request_bytes", "'1.5'"]),
        ("api = v4", ["api", "'v4'", "v3, v2"]),
        ("transport = http", ["transport", "'http'", "grpc, gateway"]),
        ("protocol = ftp", ["protocol", "'ftp'", "http, https"]),
        ("host = a:1", ["host", "'a:1'", "port"]),
        ("host =", ["host", "''"]),
        ("endpoints = ftp://a:1", ["endpoints", "ftp://a:1", "scheme"]),
        ("endpoints = a:99999", ["endpoints", "a:99999"]),
        ("endpoints = a:1/path", ["endpoints", "a:1/path"]),
        ("hots = x", ["hots", "unknown key", "valid keys: host, port"]),
    ],
)
def test_file_errors_name_file_key_value(tmp_path: Path, body: str, fragments: list[str]) -> None:
    conf = write_conf(tmp_path, body)
    with pytest.raises(EtcdSettingsError) as info:
        read_conf_file(conf)
    message = str(info.value)
    for fragment in [str(conf), *fragments]:
        assert fragment in message
    with pytest.raises(EtcdSettingsError, match=re.escape(str(conf))):
        load(conf_files=[conf])


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    with pytest.raises(EtcdSettingsError, match=re.escape(str(missing))):
        load(conf_files=[missing])
    headless = tmp_path / "headless.conf"
    headless.write_text("port = 1\n")
    with pytest.raises(EtcdSettingsError, match=re.escape(str(headless))):
        read_conf_file(headless)
    duplicate = write_conf(tmp_path, "port = 1\nport = 2")
    with pytest.raises(EtcdSettingsError, match=re.escape(str(duplicate))):
        read_conf_file(duplicate)


def test_sections_other_than_etcd_are_ignored(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text("[DEFAULT]\nport = 1\nbogus = 2\n[OTHER]\nhost = h\n[ETCD]\nhost = e\n")
    assert read_conf_file(conf) == {"host": "e"}
    conf.write_text("[OTHER]\nhost = h\n")
    assert read_conf_file(conf) == {}


def test_no_interpolation(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "username = u\npassword = 100%(x)s")
    assert read_conf_file(conf)["password"] == "100%(x)s"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LINK_ETCD_PORT", "abc"),
        ("LINK_ETCD_ALLOW_RECONNECT", "maybe"),
        ("LINK_ETCD_API", "v1"),
        ("LINK_ETCD_ENDPOINTS", "gopher://x"),
        ("LINK_ETCD_READ_TIMEOUT", "-2"),
    ],
)
def test_env_errors_name_variable_and_value(variable: str, value: str) -> None:
    with pytest.raises(EtcdSettingsError) as info:
        load(environ={variable: value})
    assert variable in str(info.value)
    assert repr(value) in str(info.value) or value in str(info.value)


def test_env_uri_error_names_variable() -> None:
    with pytest.raises(EtcdSettingsError, match=r"LINK_ETCD_URI.*redis"):
        load(environ={"LINK_ETCD_URI": "redis://h"})


def test_unknown_env_variables_are_ignored() -> None:
    assert load(environ={"LINK_ETCD_HSOT": "x", "LINK_ETCD_TEST_BINARY": "y"}) == EtcdSettings()


def test_unknown_kwarg_lists_valid_names() -> None:
    with pytest.raises(EtcdSettingsError) as info:
        load(hots="x", timeout=1)
    message = str(info.value)
    assert "hots" in message
    assert "timeout" in message
    for name in FIELD_NAMES:
        assert name in message


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"port": 0}, ["'port'", "0"]),
        ({"port": True}, ["'port'", "True", "boolean"]),
        ({"read_timeout": 0}, ["'read_timeout'", "0"]),
        ({"read_timeout": float("inf")}, ["'read_timeout'", "inf"]),
        ({"per_host_pool_size": 0}, ["'per_host_pool_size'", "0"]),
        ({"max_txn_ops": -5}, ["'max_txn_ops'", "-5"]),
        ({"api": "v4"}, ["'api'", "'v4'"]),
        ({"protocol": "ftp"}, ["'protocol'", "'ftp'"]),
        ({"host": None}, ["'host'", "None"]),
        ({"allow_redirect": 1}, ["'allow_redirect'", "1"]),
        ({"cert_key": "/k.pem"}, ["'cert_key'", "/k.pem", "cert"]),
        ({"password": "pw"}, ["'password'", "username"]),
        ({"endpoints": ("https://a:1", "b:2")}, ["'endpoints'", "https://a:1", "mix"]),
        ({"endpoints": ("https://a:1", "http://b:2")}, ["'endpoints'", "mix"]),
        ({"endpoints": "a:1", "protocol": "https", "host": "x"}, []),
    ],
)
def test_kwarg_errors_name_key_and_value(changes: dict[str, object], fragments: list[str]) -> None:
    if not fragments:  # control case: valid
        load(**changes)
        return
    with pytest.raises(EtcdSettingsError) as info:
        load(**changes)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="setting 'port'"):
        EtcdSettings(port=0)


# --------------------------------------------------------------------------
# passwords stay hidden
# --------------------------------------------------------------------------


def test_repr_and_str_hide_password() -> None:
    settings = EtcdSettings(username="bob", password="hunter2")
    for text in (repr(settings), str(settings), f"{settings}"):
        assert "hunter2" not in text
        assert "password='***'" in text
        assert "username='bob'" in text
    assert "password=None" in repr(EtcdSettings())
    assert settings.password == "hunter2"


def test_errors_hide_password() -> None:
    with pytest.raises(EtcdSettingsError) as info:
        EtcdSettings(password="hunter2")
    assert "hunter2" not in str(info.value)
    with pytest.raises(EtcdSettingsError) as info:
        parse_uri("etcd://bob:hunter2@h:99999/?password=hunter2")
    assert "hunter2" not in str(info.value)
    assert "bob:***@" in str(info.value)
    with pytest.raises(EtcdSettingsError) as info:
        parse_uri("etcd://bob:hunter2@h?nope=1&password=hunter2")
    assert "hunter2" not in str(info.value)
    assert "nope" in str(info.value)


# --------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------


def test_parse_uri_full() -> None:
    assert parse_uri("etcd://bob:s3cr%40t%3A%2F@host:2380/my/app?api=v2&read_timeout=3") == {
        "protocol": "http",
        "username": "bob",
        "password": "s3cr@t:/",
        "host": "host",
        "port": 2380,
        "endpoints": (),
        "prefix": "/my/app",
        "api": "v2",
        "read_timeout": 3.0,
    }


def test_parse_uri_minimal() -> None:
    assert parse_uri("etcd://h") == {"protocol": "http", "host": "h", "endpoints": ()}
    assert parse_uri("etcd://h/") == {"protocol": "http", "host": "h", "endpoints": ()}
    assert parse_uri("etcd:///app") == {"protocol": "http", "prefix": "/app"}


@pytest.mark.parametrize(
    ("scheme", "protocol"),
    [("etcd", "http"), ("etcd+http", "http"), ("etcds", "https"), ("etcd+https", "https")],
)
def test_parse_uri_schemes(scheme: str, protocol: str) -> None:
    assert parse_uri(f"{scheme}://h:1")["protocol"] == protocol
    assert parse_uri(f"{scheme.upper()}://h:1")["protocol"] == protocol
    assert load(uri=f"{scheme}://h:1").urls == (f"{protocol}://h:1",)


def test_parse_uri_multiple_hosts_and_ipv6() -> None:
    values = parse_uri("etcds://a:1,b,[::1]:3,[fe80::2]/p")
    assert values["endpoints"] == ("a:1", "b", "[::1]:3", "[fe80::2]")
    assert "host" not in values
    settings = load(uri="etcds://a:1,b,[::1]:3,[fe80::2]/p", port=2400)
    assert settings.urls == (
        "https://a:1",
        "https://b:2400",
        "https://[::1]:3",
        "https://[fe80::2]:2400",
    )
    single = parse_uri("etcd://[2001:db8::7]:2379")
    assert (single["host"], single["port"]) == ("2001:db8::7", 2379)


def test_parse_uri_query_sets_any_field() -> None:
    values = parse_uri(
        "etcd://h?ca_cert=/p/ca.pem&allow_reconnect=no&max_txn_ops=64&username=u&password=a%26b"
    )
    assert values["ca_cert"] == "/p/ca.pem"
    assert values["allow_reconnect"] is False
    assert values["max_txn_ops"] == 64
    assert values["password"] == "a&b"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://h:2379", "scheme"),
        ("redis://h", "scheme"),
        ("h:2379", "scheme"),
        ("etcd://h:port", "'port'"),
        ("etcd://h:0", "1..65535"),
        ("etcd://a,,b", "invalid host"),
        ("etcd://[::1", "unclosed"),
        ("etcd://h?bogus=1", "bogus"),
        ("etcd://h?api=v2&api=v3", "more than once"),
        ("etcd://h?host=other", "already set"),
        ("etcd://h/app?prefix=/x", "already set"),
        ("etcd://h?api=v9", "'v9'"),
        ("etcd://bob@", "without a host"),
        ("etcd://h#frag", "fragment"),
    ],
)
def test_parse_uri_errors(uri: str, fragment: str) -> None:
    with pytest.raises(EtcdSettingsError) as info:
        parse_uri(uri)
    assert fragment in str(info.value)
    assert "URI" in str(info.value)


HOSTNAMES = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){0,3}", fullmatch=True)
ADDRESSES = st.ip_addresses().map(str)
PORTS = st.integers(min_value=1, max_value=65535)


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@given(host=st.one_of(HOSTNAMES, ADDRESSES), port=PORTS, tls=st.booleans())
def test_host_port_round_trip(host: str, port: int, tls: bool) -> None:
    scheme, protocol = ("etcds", "https") if tls else ("etcd", "http")
    values = parse_uri(f"{scheme}://{bracket(host)}:{port}")
    assert values == {"protocol": protocol, "host": host, "port": port, "endpoints": ()}
    settings = EtcdSettings(**values)
    assert settings.urls == (f"{protocol}://{bracket(host)}:{port}",)
    # and back: the url is a valid endpoint giving the same url
    assert EtcdSettings(endpoints=settings.urls).urls == settings.urls


@given(
    user=st.text(st.characters(codec="utf-8"), min_size=1).filter(str.strip),
    password=st.text(st.characters(codec="utf-8"), min_size=1),
)
def test_credentials_round_trip(user: str, password: str) -> None:
    uri = f"etcd://{quote(user, safe='')}:{quote(password, safe='')}@h:1"
    values = parse_uri(uri)
    assert values["username"] == user.strip()
    assert values["password"] == password
    assert "password='***'" in repr(EtcdSettings(**values))


# --------------------------------------------------------------------------
# urls
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "urls"),
    [
        ({}, ("http://127.0.0.1:2379",)),
        ({"host": "::1", "port": 2380}, ("http://[::1]:2380",)),
        ({"host": "[::1]", "protocol": "https"}, ("https://[::1]:2379",)),
        (
            {"endpoints": "a, b:1, [::1], [::2]:3, ::4"},
            (
                "http://a:2379",
                "http://b:1",
                "http://[::1]:2379",
                "http://[::2]:3",
                "http://[::4]:2379",
            ),
        ),
        ({"endpoints": "a:1, b:2", "protocol": "https", "port": 9}, ("https://a:1", "https://b:2")),
        ({"endpoints": "http://a/, HTTP://b:2"}, ("http://a:2379", "http://b:2")),
        ({"endpoints": "a:1 a:1 http://a:1"}, ("http://a:1",)),
        ({"endpoints": "a", "host": "ignored", "port": 7}, ("http://a:7",)),
    ],
)
def test_urls(kwargs: dict[str, object], urls: tuple[str, ...]) -> None:
    assert EtcdSettings(**kwargs).urls == urls  # type: ignore[arg-type]


def test_explicit_endpoint_schemes_set_protocol() -> None:
    settings = EtcdSettings(endpoints=("https://a:1", "https://b:2"))
    assert settings.protocol == "https"
    assert settings.urls == ("https://a:1", "https://b:2")
    mixed: dict[str, Any] = {"endpoints": "https://a:1 b:2", "protocol": "https"}
    assert EtcdSettings(**mixed).protocol == "https"


# --------------------------------------------------------------------------
# search path
# --------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A conf file in every directory of the search path we can fake, named by layer."""
    prefix, home, cwd, site = (tmp_path / d for d in ("prefix", "home", "cwd", "site"))
    dirs = {
        "b3j0f-data": site / "b3j0f" / "conf" / "data",
        "prefix/.config": prefix / ".config",
        "prefix/config": prefix / "config",
        "prefix/etc": prefix / "etc",
        "XDG_CONFIG_HOME": tmp_path / "xdg-home",
        "XDG_CONFIG_DIRS": tmp_path / "xdg-dirs",
        "APPDATA": tmp_path / "appdata",
        "PROGRAMDATA": tmp_path / "programdata",
        "LOCALAPPDATA": tmp_path / "localappdata",
        "home/.config": home / ".config",
        "home/config": home / "config",
        "home/etc": home / "etc",
        "cwd": cwd,
        "B3J0F_CONF_DIR": tmp_path / "b3j0f-conf-dir",
    }
    for name, directory in dirs.items():
        write_conf(directory, f"host = {name.replace('/', '-')}\nsrv_domain = {name}")
    driver = site / "b3j0f" / "conf" / "driver" / "file" / "base.py"
    driver.parent.mkdir(parents=True)
    driver.touch()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.chdir(cwd)
    return {name: directory / CONF_PATH for name, directory in dirs.items()}


def faked_environ(tmp_path: Path) -> dict[str, str]:
    """The environment matching the ``layout`` fixture."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-home"),
        "XDG_CONFIG_DIRS": str(tmp_path / "xdg-dirs"),
        "APPDATA": str(tmp_path / "appdata"),
        "PROGRAMDATA": str(tmp_path / "programdata"),
        "LOCALAPPDATA": str(tmp_path / "localappdata"),
        "B3J0F_CONF_DIR": str(tmp_path / "b3j0f-conf-dir"),
    }


def ours(paths: list[Path], tmp_path: Path) -> list[Path]:
    """Drop files that really exist on this machine (e.g. /etc/link/etcd/middleware.conf)."""
    return [path for path in paths if tmp_path in path.parents]


def test_search_path_order_is_b3j0f_order(layout: dict[str, Path], tmp_path: Path) -> None:
    environ = faked_environ(tmp_path)
    assert ours(conf_search_path(environ), tmp_path) == list(layout.values())


def test_b3j0f_conf_dir_is_last_and_strongest(layout: dict[str, Path], tmp_path: Path) -> None:
    environ = faked_environ(tmp_path)
    paths = conf_search_path(environ)
    assert paths[-1] == layout["B3J0F_CONF_DIR"]
    assert load_settings(environ=environ).srv_domain == "B3J0F_CONF_DIR"
    del environ["B3J0F_CONF_DIR"]
    assert layout["B3J0F_CONF_DIR"] not in conf_search_path(environ)
    assert load_settings(environ=environ).srv_domain == "cwd"


def test_search_path_feeds_load_settings_key_by_key(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    environ = faked_environ(tmp_path)
    layout["prefix/etc"].write_text("[ETCD]\nhost = h\napi = v2\n")
    settings = load_settings(environ=environ)
    assert settings.api == "v2"  # from the weak prefix/etc layer, never overridden
    assert settings.host == "B3J0F_CONF_DIR"
    assert load_settings(environ=environ, conf_files=[]).api == "v3"  # [] reads no file


def test_search_path_skips_missing_and_empty(layout: dict[str, Path], tmp_path: Path) -> None:
    environ = faked_environ(tmp_path)
    layout["home/config"].unlink()
    environ["APPDATA"] = ""
    environ["PROGRAMDATA"] = str(tmp_path / "nowhere")
    paths = ours(conf_search_path(environ), tmp_path)
    for name in ("home/config", "APPDATA", "PROGRAMDATA"):
        assert layout[name] not in paths
    assert all(path.is_absolute() and path.is_file() for path in paths)


def test_search_path_home_fallback(layout: dict[str, Path], tmp_path: Path) -> None:
    environ = {"USERPROFILE": str(tmp_path / "home")}
    assert layout["home/.config"] in conf_search_path(environ)
    assert layout["home/.config"] not in conf_search_path({"HOME": str(tmp_path / "x")})


def test_search_path_xdg_config_dirs_is_one_directory_like_b3j0f(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    joined = f"{tmp_path / 'xdg-dirs'}:{tmp_path / 'appdata'}"
    paths = conf_search_path({"HOME": str(tmp_path / "x"), "XDG_CONFIG_DIRS": joined})
    assert layout["XDG_CONFIG_DIRS"] not in paths
    assert layout["APPDATA"] not in paths


def test_search_path_file_listed_once_at_strongest_place(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    environ = faked_environ(tmp_path)
    environ["B3J0F_CONF_DIR"] = str(tmp_path / "home" / ".config")
    paths = ours(conf_search_path(environ), tmp_path)
    assert paths.count(layout["home/.config"]) == 1
    assert paths[-1] == layout["home/.config"]


def test_search_path_without_b3j0f_conf_installed(
    layout: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "site")])
    environ = faked_environ(tmp_path)
    assert layout["b3j0f-data"] not in conf_search_path(environ)


def test_relative_b3j0f_conf_dir_is_made_absolute(layout: dict[str, Path], tmp_path: Path) -> None:
    paths = conf_search_path({"HOME": str(tmp_path / "x"), "B3J0F_CONF_DIR": "."})
    assert paths[-1] == layout["cwd"]
    assert paths[-1].is_absolute()


# --------------------------------------------------------------------------
# the shipped default file
# --------------------------------------------------------------------------


def test_shipped_conf_sets_nothing() -> None:
    assert read_conf_file(SHIPPED_CONF) == {}


def test_shipped_conf_documents_every_key_with_its_default(tmp_path: Path) -> None:
    lines = SHIPPED_CONF.read_text(encoding="utf-8").splitlines()
    keys = [m.group(1) for line in lines if (m := re.fullmatch(r"# (\w+) =.*", line))]
    assert sorted(keys) == sorted(FIELD_NAMES)
    for index, line in enumerate(lines):
        if re.fullmatch(r"# \w+ =.*", line):
            assert "Default:" in lines[index - 1], line
    uncommented = tmp_path / "uncommented.conf"
    uncommented.write_text(
        "\n".join(line[2:] if re.fullmatch(r"# \w+ =.*", line) else line for line in lines)
    )
    values = read_conf_file(uncommented)
    assert sorted(values) == sorted(FIELD_NAMES)
    assert EtcdSettings(**values) == EtcdSettings()


def test_allow_reconnect_false_takes_a_single_endpoint() -> None:
    assert load_settings(allow_reconnect=False, host="h").urls == ("http://h:2379",)
    with pytest.raises(EtcdSettingsError, match=r"allow_reconnect.*2 were given"):
        load_settings(allow_reconnect=False, endpoints="a:1, b:2")


# --------------------------------------------------------------------------
# TLS files, origins of cross-field errors, passwords in messages
# --------------------------------------------------------------------------

SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize("name", ["ca_cert", "cert"])
def test_missing_tls_file_is_a_settings_error_naming_the_setting(tmp_path: Path, name: str) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(EtcdSettingsError) as info:
        load(**{name: missing})
    assert f"keyword argument {name!r}" in str(info.value)
    assert missing in str(info.value)
    with pytest.raises(EtcdSettingsError, match=f"setting {name!r}"):
        EtcdSettings(**{name: missing})  # type: ignore[arg-type]


def test_missing_client_key_and_a_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EtcdSettingsError, match=r"'cert_key'.*No such file"):
        load(cert=str(SHIPPED_CONF), cert_key=str(tmp_path / "k.pem"))
    with pytest.raises(EtcdSettingsError, match=r"'ca_cert'.*directory"):
        load(ca_cert=str(tmp_path))
    assert load(cert=str(SHIPPED_CONF), cert_key=str(SHIPPED_CONF)).cert_key == str(SHIPPED_CONF)


def test_tls_file_error_names_the_layer_it_came_from(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "ca_cert = /no/such/ca.pem")
    with pytest.raises(EtcdSettingsError, match=rf"{re.escape(str(conf))}: \[ETCD\] ca_cert"):
        load(conf_files=[conf])
    with pytest.raises(EtcdSettingsError, match="environment variable LINK_ETCD_CERT:"):
        load(environ={"LINK_ETCD_CERT": "/no/such/cert.pem"})
    with pytest.raises(
        EtcdSettingsError, match=r"URI 'etcds://u:\*\*\*@h\?ca_cert=/no' \(ca_cert\)"
    ):
        load(uri=f"etcds://u:{SECRET}@h?ca_cert=/no")
    # a stronger layer that fixes it wins: the weaker value is never checked
    assert load(conf_files=[conf], ca_cert="").ca_cert is None


@pytest.mark.parametrize(
    ("body", "environ", "origin"),
    [
        ("cert_key = /k.pem", {}, "[ETCD] cert_key"),
        (f"password = {SECRET}", {}, "[ETCD] password"),
        ("", {"LINK_ETCD_PASSWORD": SECRET}, "environment variable LINK_ETCD_PASSWORD"),
        ("", {"LINK_ETCD_CERT_KEY": "/k"}, "environment variable LINK_ETCD_CERT_KEY"),
        ("endpoints = http://a, https://b", {}, "[ETCD] endpoints"),
    ],
)
def test_cross_field_errors_name_their_origin(
    tmp_path: Path, body: str, environ: dict[str, str], origin: str
) -> None:
    conf = write_conf(tmp_path, body)
    with pytest.raises(EtcdSettingsError) as info:
        load(conf_files=[conf], environ=environ)
    assert origin in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"password = {SECRET}\n[ETCD]\n", "line 1"),
        (f"[ETCD]\nusername = u\npassword = {SECRET}\npassword = {SECRET}\n", "line 4"),
        (f"[ETCD]\nusername = u\n={SECRET}\n", "line(s) 3"),
        (f"[ETCD]\n[ETCD]\npassword = {SECRET}\n", "line 2"),
        (f"[ETCD]\nhost = a\n password = {SECRET}\n", "[ETCD] host"),
        (f"[ETCD]\nendpoints = a:1\n  Password: {SECRET}\n", "[ETCD] endpoints"),
    ],
)
def test_conf_file_errors_never_quote_a_password(tmp_path: Path, text: str, where: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    with pytest.raises(EtcdSettingsError) as info:
        read_conf_file(conf)
    assert where in str(info.value)
    assert str(conf) in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_continued_values_are_still_read(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "endpoints = a:1,\n  b:2\n  c:3")
    assert read_conf_file(conf) == {"endpoints": ("a:1", "b:2", "c:3")}


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (f"etcd://u:{SECRET}@h/app", "etcd://u:***@h/app"),
        (f"etcd://u:a/{SECRET}@h/app", "etcd://u:***@h/app"),
        (f"etcd://u:a?{SECRET}@h", "etcd://u:***@h"),
        (f"etcd://u:a#{SECRET}@h:1", "etcd://u:***@h:1"),
        (f"etcd://u:a@b/{SECRET}@h", "etcd://u:***@h"),
        (f"etcd://h?api=v2&password={SECRET}&x=1", "etcd://h?api=v2&password=***"),
        (f"etcd://h?password=a&{SECRET}#{SECRET}", "etcd://h?password=***"),
        ("etcd://h:2379/app?username=a%40b", "etcd://h:2379/app?username=a%40b"),
        ("etcd://h:2379/app?username=a@b", "etcd://h:***@b"),  # refused: over-masked
        (f"u:{SECRET}@h", "***"),
    ],
)
def test_mask_uri(uri: str, shown: str) -> None:
    assert mask_uri(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        f"etcd://u:a/{SECRET}@h",
        f"etcd://u:a?{SECRET}@h",
        f"etcd://u:a#{SECRET}@h",
        f"etcd://u:{SECRET}#@h:2379",
        f"etcd://u@h?password=a&{SECRET}",
        f"etcd://u@h?password=a#{SECRET}",
        f"etcd://u:{SECRET}@h:70000",
        f"etcd://u:{SECRET}@h?port=x",
        f"etcd://u:12/{SECRET}@h",
        f"etcd://u:12?{SECRET}@h",
        f"etcd://u:12#{SECRET}@h",
    ],
)
def test_uri_errors_never_show_the_password(uri: str) -> None:
    with pytest.raises(EtcdSettingsError) as info:
        parse_uri(uri)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


def test_encoded_password_with_reserved_characters_round_trips() -> None:
    password = "a/b?c#d@e:f"
    values = parse_uri(f"etcd://u:{quote(password, safe='')}@h/app")
    assert values["password"] == password
    assert values["prefix"] == "/app"


def test_every_field_has_a_coercer_and_one_declaration() -> None:
    for field in dataclasses.fields(EtcdSettings):
        assert callable(field.metadata["link.etcd.coerce"]), field.name
    assert tuple(field.name for field in dataclasses.fields(EtcdSettings)) == FIELD_NAMES


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [("port", "1e3", 1000), ("port", 2379.0, 2379), ("read_timeout", " 2.5 ", 2.5)],
)
def test_numbers_are_parsed_by_msgspec(name: str, raw: object, value: object) -> None:
    assert getattr(load(**{name: raw}), name) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [("port", 2379.5), ("port", "0x10"), ("max_txn_ops", "1_000"), ("read_timeout", "inf")],
)
def test_numbers_msgspec_refuses(name: str, raw: object) -> None:
    with pytest.raises(EtcdSettingsError, match=f"'{name}'"):
        load(**{name: raw})


@pytest.mark.parametrize("uri", ["etcd://h/team@corp", "etcd://h?username=a@b"])
def test_an_at_sign_outside_the_user_info_must_be_encoded(uri: str) -> None:
    with pytest.raises(EtcdSettingsError, match="%40"):
        parse_uri(uri)
    assert parse_uri(uri.replace("@", "%40"))


@given(
    middle=st.text(alphabet="ab12/?#@:&=%+ ", min_size=1, max_size=12),
    tail=st.sampled_from(["", "/app", "/app?api=v2", "?read_timeout=2", ":2379/x"]),
)
def test_a_raw_password_is_parsed_whole_or_refused_unseen(middle: str, tail: str) -> None:
    password = f"Zq{middle}Kx"
    try:
        values = parse_uri(f"etcd://user:{password}@host{tail}")
    except EtcdSettingsError as exc:
        for text in (str(exc), repr(exc)):
            assert password not in text
            assert "Zq" not in text
            assert "Kx" not in text
        return
    assert values["password"] == unquote(password)
    assert values["host"] == "host"
