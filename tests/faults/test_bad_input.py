"""A catalogue of bad input, on every API (v3 over gRPC and the gateway, v2).

Each case asserts: the exception class (``EtcdInvalidTree`` or
``EtcdSettingsError``), a message naming the culprit, no password anywhere in the
exception chain's messages, and the whole keyspace (v3 and v2, keys, values and
revisions) byte for byte the same before and after.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from link.etcd import EtcdMiddleware
from link.etcd.errors import EtcdError, EtcdInvalidTree, EtcdSettingsError
from link.etcd.paths import MAX_DEPTH
from link.etcd.settings import load_settings
from link.etcd.testing import EtcdServer

from ..apis import APIS, connection
from ..strategies import deep_tree

#: The password of every input that carries one; no message may show it.
SECRET = "s3cr3t-Pw"
#: The tree every case starts from, at ``/seed`` below the test's prefix.
SEED = {"old": {"a": 1, "l": [1, "two", {"three": 3}]}, "x": "y", "e": {}}


@dataclass(frozen=True)
class Ctx:
    """What a case acts on."""

    client: EtcdMiddleware
    api: str
    endpoint: str
    tmp: Path

    def new(self, **settings: Any) -> EtcdMiddleware:
        """A middleware on this API with the settings given (no conf files or env)."""
        chosen = {"endpoints": [self.endpoint], **connection(self.api), **settings}
        return EtcdMiddleware(load_settings(conf_files=[], environ={}, **chosen))

    def conf(self, body: str | bytes) -> Path:
        path = self.tmp / "middleware.conf"
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        return path

    def load_conf(self, body: str | bytes) -> Any:
        return load_settings(conf_files=[self.conf(body)], environ={})

    def file(self, name: str, text: str = "not a certificate\n") -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)


@dataclass(frozen=True)
class Case:
    """One bad input: ``act`` must raise ``error`` whose message holds ``culprit``."""

    id: str
    act: Callable[[Ctx], Any]
    error: type[EtcdError]
    culprit: tuple[str, ...]
    apis: tuple[str, ...] = tuple(APIS)
    #: why this case is known to fail (it then must fail: strict xfail)
    known_bug: str | None = None


def _set(path: str, value: Any) -> Callable[[Ctx], Any]:
    def act(ctx: Ctx) -> None:
        ctx.client[path] = value

    return act


def _tree(value: Any) -> Callable[[Ctx], Any]:
    return _set("/seed", value)


def invalid(
    id: str, act: Callable[[Ctx], Any], *culprit: str, apis: Any = APIS, bug: str | None = None
) -> Case:
    return Case(id, act, EtcdInvalidTree, culprit, tuple(apis), bug)


def setting(id: str, act: Callable[[Ctx], Any], *culprit: str) -> Case:
    return Case(id, act, EtcdSettingsError, culprit)


def _uri(text: str) -> Callable[[Ctx], Any]:
    return lambda ctx: EtcdMiddleware.from_uri(text.replace("HOST", ctx.endpoint[7:]))


def _env(**variables: str) -> Callable[[Ctx], Any]:
    return lambda ctx: load_settings(conf_files=[], environ=variables)


_DEEP = "/a" * (MAX_DEPTH + 1)

CASES: list[Case] = [
    # -- paths -----------------------------------------------------------------
    invalid("path-empty", _set("", 1), "empty string"),
    invalid("path-double-slash", _set("/seed//x", 1), "'/seed//x'"),
    invalid("path-dotdot", _set("/seed/../x", 1), "'/seed/../x'"),
    invalid("path-dot", _set("/seed/./x", 1), "'/seed/./x'"),
    invalid("path-bytes", _set(b"/seed", 1), "must be a str", "bytes"),  # type: ignore[arg-type]
    invalid("path-int", _set(42, 1), "must be a str", "int"),  # type: ignore[arg-type]
    invalid("path-none", lambda ctx: ctx.client[None], "must be a str"),  # type: ignore[index]
    invalid("path-root-write", _set("/", {"a": 1}), "root"),
    invalid("path-root-delete", lambda ctx: ctx.client.__delitem__("/"), "root"),
    invalid("path-surrogate-write", _set("/seed/\ud800", 1), "'/seed/\\ud800'", "surrogate"),
    invalid("path-surrogate-read", lambda ctx: ctx.client["/seed/\udfff"], "surrogate"),
    invalid("path-surrogate-delete", lambda ctx: ctx.client.__delitem__("/seed\ud800"), "seed"),
    invalid("path-surrogate-contains", lambda ctx: "/\ud9ff" in ctx.client, "surrogate"),
    invalid("path-too-deep-write", _set(_DEEP, 1), "MAX_DEPTH"),
    invalid("path-too-deep-read", lambda ctx: ctx.client[_DEEP], "MAX_DEPTH"),
    invalid("path-v2-nonutf8-key-write", _set("/seed/\udc80", 1), "v2", apis=["v2"]),
    invalid("path-v2-nonutf8-key-read", lambda c: c.client["/seed/\udcff"], "v2", apis=["v2"]),
    # -- dict keys -------------------------------------------------------------
    invalid("key-int", _tree({"ok": {1: "a"}}), "int", "/seed/ok"),
    invalid("key-none", _tree({None: 1}), "NoneType"),
    invalid("key-bytes", _tree({"ok": {b"k": 1}}), "bytes", "/seed/ok"),
    invalid("key-tuple", _tree({("t",): 1}), "tuple"),
    invalid("key-bool", _tree({True: 1}), "bool"),
    invalid("key-float", _tree({"a": [{1.5: 1}]}), "float", "/seed/a[0]"),
    invalid("key-lone-surrogate", _tree({"ok": {"\ud800": 1}}), "/seed/ok", "surrogate"),
    invalid("key-surrogate-pair-halves", _tree({"\udbff\udc00x": 1}), "surrogate"),
    invalid("key-v2-nonutf8", _tree({"ok": {"\udc80": 1}}), "/seed/ok", "v2", apis=["v2"]),
    invalid("key-late-in-tree", _tree({"a": 1, "b": [1, 2, {"c": {2: 1}}]}), "/seed/b[2]/c"),
    # -- values ----------------------------------------------------------------
    invalid("value-object", _tree({"o": object()}), "'object'", "/seed/o"),
    invalid("value-set", _tree({"s": {1, 2}}), "'set'", "/seed/s"),
    invalid("value-frozenset", _tree([frozenset()]), "'frozenset'", "/seed[0]"),
    invalid("value-complex", _tree({"c": 1j}), "'complex'", "/seed/c"),
    invalid("value-type", _tree({"t": int}), "'type'", "/seed/t"),
    invalid("value-ellipsis", _tree({"e": ...}), "'ellipsis'"),
    invalid("value-nan", _tree({"n": math.nan}), "nan", "/seed/n"),
    invalid("value-inf", _tree({"n": [math.inf]}), "inf", "/seed/n[0]"),
    invalid("value-minus-inf", _set("/seed/leaf", -math.inf), "-inf", "/seed/leaf"),
    invalid("value-lone-surrogate", _tree({"s": "ab\ud800"}), "/seed/s", "surrogate"),
    invalid("value-surrogate-leaf", _set("/seed", "\udc80"), "/seed", "surrogate"),
    invalid("value-too-long-int", _tree({"i": 10**5000}), "/seed/i", "too long"),
    invalid("value-too-deep", _tree(deep_tree(MAX_DEPTH)), "MAX_DEPTH", "/seed/a"),
    invalid("value-far-too-deep", _tree(deep_tree(5000)), "MAX_DEPTH"),
    invalid("value-too-deep-list", _tree([[[[1]]]] * 2 + [deep_tree(MAX_DEPTH)]), "MAX_DEPTH"),
    invalid("value-too-large", _tree({"big": "x" * 1_600_000}), "/seed/big", "max_request_bytes"),
    invalid("value-v2-nonutf8-bytes", _tree({"b": b"\xff"}), "/seed/b", "v2", apis=["v2"]),
    invalid("value-deep-bad-after-good", _tree({"a": [*range(300), object()]}), "a[300]"),
    invalid("ttl-negative", lambda ctx: ctx.client.set("/seed", 1, ttl=-1), "ttl"),
    invalid("ttl-nan", lambda ctx: ctx.client.set("/seed", 1, ttl=math.nan), "ttl"),
    invalid("ttl-str", lambda ctx: ctx.client.set("/seed", 1, ttl="5"), "ttl"),  # type: ignore[arg-type]
    invalid("ttl-bad-value-first", lambda ctx: ctx.client.set("/seed", {1: 2}, ttl=5), "int"),
    # -- primitives -------------------------------------------------------------
    invalid("create-bad-value", lambda c: c.client.create("/new", {"s": {1}}), "/new/s"),
    invalid("create-ttl-bad-value", lambda c: c.client.create("/n", [math.nan], ttl=9), "/n[0]"),
    invalid("cas-bad-new", lambda c: c.client.compare_and_swap("/seed/x", "y", 1j), "complex"),
    invalid("append-bad-item", lambda c: c.client.append("/seed/old/l", {2: 1}), "int"),
    invalid("append-surrogate", lambda c: c.client.append("/seed/old/l", "\ud800"), "surrogate"),
    invalid(
        "update-bad-second-value",
        lambda ctx: ctx.client.update({"/seed/x": "new", "/seed/y": {"z": math.inf}}),
        "/seed/y/z",
    ),
    invalid(
        "update-bad-second-path",
        lambda ctx: ctx.client.update({"/seed/x": "new", "/seed/../y": 1}),
        "'/seed/../y'",
    ),
    invalid("transform-bad-result", lambda c: c.client.transform("/seed/x", lambda v: {v}), "set"),
    invalid(
        "create-v2-nonutf8-bytes",
        lambda ctx: ctx.client.create("/new", b"\xfe"),
        "/new",
        "v2",
        apis=["v2"],
    ),
    invalid(
        "cas-v2-nonutf8-bytes",
        lambda ctx: ctx.client.compare_and_swap("/seed/x", "y", b"\xfe"),
        "/seed/x",
        "v2",
        apis=["v2"],
    ),
    # -- settings (keyword arguments) --------------------------------------------
    setting("setting-port-text", lambda ctx: ctx.new(port="abc"), "'port'", "'abc'"),
    setting("setting-port-zero", lambda ctx: ctx.new(port=0), "'port'", "1..65535"),
    setting("setting-port-huge", lambda ctx: ctx.new(port=70000), "'port'", "70000"),
    setting("setting-port-bool", lambda ctx: ctx.new(port=True), "'port'", "boolean"),
    setting("setting-timeout-negative", lambda ctx: ctx.new(read_timeout=-1), "read_timeout"),
    setting("setting-timeout-nan", lambda ctx: ctx.new(read_timeout="nan"), "read_timeout"),
    setting("setting-timeout-inf", lambda ctx: ctx.new(read_timeout=math.inf), "finite"),
    setting("setting-api", lambda ctx: ctx.new(api="v4"), "'api'", "'v4'"),
    setting("setting-transport", lambda ctx: ctx.new(transport="http"), "'transport'"),
    setting("setting-protocol", lambda ctx: ctx.new(protocol="ftp"), "'protocol'", "'ftp'"),
    setting("setting-endpoint-path", lambda ctx: ctx.new(endpoints="http://a:1/x"), "a:1/x"),
    setting("setting-endpoint-scheme", lambda ctx: ctx.new(endpoints="ftp://a:1"), "ftp://a:1"),
    setting("setting-endpoint-type", lambda ctx: ctx.new(endpoints=[1]), "'endpoints'"),
    setting("setting-endpoints-mixed", lambda ctx: ctx.new(endpoints="http://a,https://b"), "mix"),
    setting("setting-host-with-port", lambda ctx: ctx.new(host="a:1", endpoints=()), "'host'"),
    setting("setting-prefix-surrogate", lambda ctx: ctx.new(prefix="/a\ud800"), "'prefix'"),
    setting("setting-prefix-dotdot", lambda ctx: ctx.new(prefix="/a/../b"), "'prefix'"),
    setting("setting-max-txn-ops", lambda ctx: ctx.new(max_txn_ops=0), "'max_txn_ops'"),
    setting("setting-boolean-word", lambda ctx: ctx.new(allow_reconnect="maybe"), "'maybe'"),
    setting("setting-unknown", lambda ctx: ctx.new(hostname="a"), "hostname"),
    setting(
        "setting-password-without-user",
        lambda ctx: ctx.new(password=SECRET),
        "keyword argument 'password'",
        "username",
    ),
    setting("setting-password-type", lambda ctx: ctx.new(username="u", password=42), "'password'"),
    setting("setting-cert-key-without-cert", lambda ctx: ctx.new(cert_key="/k.pem"), "cert_key"),
    setting(
        "setting-reconnect-off-several",
        lambda c: c.new(allow_reconnect=False, endpoints="a,b"),
        "allow_reconnect",
    ),
    # -- TLS files ---------------------------------------------------------------
    setting(
        "tls-ca-missing",
        lambda ctx: ctx.new(ca_cert="/nonexistent/ca.pem"),
        "ca_cert",
        "/nonexistent/ca.pem",
    ),
    setting(
        "tls-cert-missing",
        lambda ctx: ctx.new(cert="/nonexistent/c.pem"),
        "'cert'",
        "/nonexistent/c.pem",
    ),
    setting(
        "tls-key-missing",
        lambda ctx: ctx.new(cert=ctx.file("c.pem"), cert_key="/nonexistent/k.pem"),
        "cert_key",
        "/nonexistent/k.pem",
    ),
    setting("tls-ca-directory", lambda ctx: ctx.new(ca_cert=str(ctx.tmp)), "ca_cert", "directory"),
    setting(
        "tls-ca-missing-in-uri",
        _uri("etcds://u:" + SECRET + "@HOST/app?ca_cert=/nonexistent/ca.pem"),
        "ca_cert",
        "/nonexistent/ca.pem",
        "u:***@",
    ),
    setting(
        "tls-ca-missing-in-conf",
        lambda ctx: ctx.load_conf("[ETCD]\nca_cert = /nonexistent/ca.pem\n"),
        "middleware.conf: [ETCD] ca_cert",
        "/nonexistent/ca.pem",
    ),
    setting(
        "tls-key-missing-in-env",
        _env(LINK_ETCD_CERT="/etc/hostname-nope", LINK_ETCD_CERT_KEY="/nope"),
        "LINK_ETCD_CERT",
    ),
    # -- URIs ----------------------------------------------------------------------
    setting("uri-scheme", _uri("http://HOST"), "scheme"),
    setting("uri-password-slash", _uri("etcd://user:ab/" + SECRET + "@HOST/app"), "percent-encode"),
    setting("uri-password-question", _uri("etcd://user:ab?" + SECRET + "@HOST"), "%3F"),
    setting("uri-password-hash", _uri("etcd://user:ab#" + SECRET + "@HOST"), "%23"),
    setting("uri-password-hash-port", _uri("etcd://user:" + SECRET + "#x@HOST:0"), "%23"),
    setting("uri-bad-port", _uri("etcd://user:" + SECRET + "@HOST9999999"), "port"),
    setting("uri-unclosed-ipv6", _uri("etcd://user:" + SECRET + "@[::1"), "'['"),
    setting("uri-fragment", _uri("etcd://HOST/app#frag"), "#frag"),
    setting("uri-unknown-field", _uri("etcd://HOST?colour=red"), "colour"),
    setting("uri-repeated-field", _uri("etcd://HOST?api=v2&api=v3"), "api", "more than once"),
    setting("uri-query-password-amp", _uri("etcd://u@HOST?password=a&" + SECRET), "not shown"),
    setting("uri-query-password-hash", _uri("etcd://u@HOST?password=a#" + SECRET), "fragment"),
    setting("uri-password-no-user", _uri("etcd://:" + SECRET + "@HOST"), "password", "username"),
    setting("uri-user-no-host", _uri("etcd://u:" + SECRET + "@/app"), "without a host"),
    setting(
        "uri-bad-timeout", _uri("etcd://u:" + SECRET + "@HOST?read_timeout=-2"), "read_timeout"
    ),
    setting("uri-env", _env(LINK_ETCD_URI="etcd://u:p/" + SECRET + "@h"), "LINK_ETCD_URI"),
    # -- environment -------------------------------------------------------------------
    setting("env-port", _env(LINK_ETCD_PORT="x"), "LINK_ETCD_PORT", "'x'"),
    setting("env-password-alone", _env(LINK_ETCD_PASSWORD=SECRET), "LINK_ETCD_PASSWORD"),
    setting("env-api", _env(LINK_ETCD_API="v1"), "LINK_ETCD_API", "'v1'"),
    # -- configuration files ---------------------------------------------------------------
    setting(
        "conf-password-before-section",
        lambda ctx: ctx.load_conf(f"password = {SECRET}\n[ETCD]\n"),
        "line 1",
        "[section]",
    ),
    setting(
        "conf-password-duplicate",
        lambda ctx: ctx.load_conf(f"[ETCD]\nusername = u\npassword = {SECRET}\npassword = x\n"),
        "line 4",
        "'password'",
    ),
    setting(
        "conf-garbage-line",
        lambda ctx: ctx.load_conf(f"[ETCD]\nusername = u\n=password {SECRET}\n"),
        "line(s) 3",
    ),
    setting(
        "conf-password-continued",
        lambda ctx: ctx.load_conf(f"[ETCD]\nhost = a\n  password = {SECRET}\n"),
        "[ETCD] host",
    ),
    setting(
        "conf-password-without-user",
        lambda ctx: ctx.load_conf(f"[ETCD]\npassword = {SECRET}\n"),
        "middleware.conf: [ETCD] password",
        "username",
    ),
    setting(
        "conf-cert-key-without-cert",
        lambda ctx: ctx.load_conf("[ETCD]\ncert_key = /k.pem\n"),
        "middleware.conf: [ETCD] cert_key",
    ),
    setting("conf-unknown-key", lambda ctx: ctx.load_conf("[ETCD]\nhots = a\n"), "hots"),
    setting("conf-bad-port", lambda ctx: ctx.load_conf("[ETCD]\nport = 0x1\n"), "port", "0x1"),
    setting("conf-not-utf8", lambda ctx: ctx.load_conf(b"[ETCD]\nhost = \xff\n"), "UTF-8"),
    setting(
        "conf-missing",
        lambda ctx: load_settings(conf_files=[ctx.tmp / "nope.conf"], environ={}),
        "nope.conf",
    ),
]


def _http(url: str, data: bytes | None = None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(answer.headers), answer.read()


def keyspace(endpoint: str) -> tuple[Any, ...]:
    """Every v3 key-value (with revisions, leases), the revision and the leases granted;
    the v2 tree and index."""
    all_keys = base64.b64encode(b"\x00").decode()
    _, body = _http(
        f"{endpoint}/v3/kv/range",
        json.dumps({"key": all_keys, "range_end": all_keys}).encode(),
    )
    v3 = json.loads(body)
    _, leases = _http(f"{endpoint}/v3/lease/leases", b"{}")
    headers, v2 = _http(f"{endpoint}/v2/keys/?recursive=true&sorted=true")
    return (
        v3["header"]["revision"],
        v3.get("kvs", []),
        json.loads(leases).get("leases", []),
        headers.get("X-Etcd-Index"),
        v2,
    )


def messages(exc: BaseException) -> Iterator[str]:
    """str() and repr() of every exception a traceback of ``exc`` would show."""
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        if seen.__cause__ is not None:
            seen = seen.__cause__
        elif seen.__context__ is not None and not seen.__suppress_context__:
            seen = seen.__context__
        else:
            seen = None


def _close(made: object) -> None:
    """Close what a case made, if it is a client (a case that should have raised)."""
    if isinstance(made, EtcdMiddleware):
        made.close()


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    """An etcd of this module's own: the keyspace compared is changed by nothing
    else (keys and leases with a TTL that earlier tests left on the session's
    server expire while a case runs)."""
    with EtcdServer(enable_v2=True) as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(
    case: Case,
    api: str,
    client: EtcdMiddleware,
    etcd_server: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if api not in case.apis:
        pytest.skip(f"valid input on {api}")
    if case.known_bug:
        request.applymarker(pytest.mark.xfail(reason=case.known_bug, strict=True))
    client["/seed"] = SEED
    ctx = Ctx(client, api, etcd_server.endpoint, tmp_path)
    before = keyspace(etcd_server.endpoint)
    with pytest.raises(case.error) as info:
        _close(case.act(ctx))  # a client made despite the bad input is closed
    after = keyspace(etcd_server.endpoint)
    text = str(info.value)
    for culprit in case.culprit:
        assert culprit in text, text
    for message in messages(info.value):
        assert SECRET not in message, message
        assert SECRET[1:-1] not in message, message
    assert after == before
    assert client["/seed"] == SEED
