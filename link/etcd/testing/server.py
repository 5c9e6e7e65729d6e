"""One real etcd process on loopback (:class:`EtcdServer`), etcdctl against it, and
:class:`ExternalEtcdServer` for a server this harness did not start."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from .binaries import find_etcd_binary

__all__ = [
    "ETCDCTL_TIMEOUT",
    "STOP_GRACE",
    "TEST_ENDPOINT_ENV",
    "EtcdServer",
    "EtcdctlError",
    "ExternalEtcdServer",
]

#: Environment variable pointing the ``etcd_server`` fixture at an external server.
TEST_ENDPOINT_ENV = "LINK_ETCD_TEST_ENDPOINT"
#: Seconds etcdctl may run before :meth:`EtcdServer.etcdctl` gives up.
ETCDCTL_TIMEOUT = 30.0
#: Seconds between SIGTERM and SIGKILL when stopping a server.
STOP_GRACE = 5.0
#: Lines of log kept in memory after :meth:`EtcdServer.stop` removed the log file.
_KEPT_LOG_LINES = 500


def _free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return *count* distinct TCP ports that are free on *host* right now.

    All sockets are held open until every port is chosen, so the ports differ;
    another process may still take one before etcd binds it (see the retry in
    :meth:`EtcdServer.start`).
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class EtcdctlError(subprocess.CalledProcessError):
    """``etcdctl`` exited with a non-zero status; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        detail = (self.stderr or self.output or "").strip()
        return f"{super().__str__()}\n{detail}" if detail else super().__str__()


def _run_etcdctl(
    ctl_binary: str,
    endpoints: Sequence[str],
    tls_args: Sequence[str],
    args: Sequence[str],
    input: str | None,
    check: bool,
    env: Mapping[str, str] | None,
) -> subprocess.CompletedProcess[str]:
    """Run etcdctl (v3 API, text mode) against *endpoints*; see :meth:`EtcdServer.etcdctl`."""
    # etcdctl refuses an ETCDCTL_* variable that a flag also sets, so inherited
    # ones are dropped; the caller's *env* wins over everything.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    full_env["ETCDCTL_API"] = "3"
    full_env.update(env or {})
    cmd = [ctl_binary, "--endpoints=" + ",".join(endpoints), *tls_args, *args]
    result = subprocess.run(
        cmd,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=ETCDCTL_TIMEOUT,
        check=False,
    )
    if check and result.returncode != 0:
        raise EtcdctlError(result.returncode, cmd, result.stdout, result.stderr)
    return result


class EtcdServer:
    """One real etcd process on loopback, with a temporary data directory.

    Use it as a context manager (``with EtcdServer() as server:``) or call
    :meth:`start` / :meth:`stop`.  Ports are chosen when the object is created
    and never change, so :attr:`endpoint` is known before :meth:`start` and
    stays valid across :meth:`restart` and :meth:`kill` + :meth:`start`.

    :param enable_v2: pass ``--enable-v2=true`` so ``/v2/keys`` is served
        (deprecated in etcd 3.5, gone in 3.6).  v2 auth is never enabled.
    :param binary: path of the ``etcd`` binary; default :func:`find_etcd_binary`.
        ``etcdctl`` is looked up next to it.
    :param name: member name (``--name``).
    :param certfile: server certificate (PEM); turns the client URL into
        ``https://``.  Requires *keyfile*.
    :param keyfile: private key for *certfile* (PEM).
    :param trusted_ca_file: CA bundle (PEM) for ``--trusted-ca-file``, the CA
        that signs client certificates.  Since etcd 3.4 this alone makes etcd
        *require* client certificates, whatever ``--client-cert-auth`` says
        (etcd-io/etcd#11124), so the harness then presents
        *client_certfile*.  For TLS without client certificates give
        *ca_file* instead.
    :param client_cert_auth: pass ``--client-cert-auth=true``; needs
        *trusted_ca_file*.
    :param extra_args: further etcd command-line arguments, appended last.
    :param startup_timeout: seconds :meth:`start` waits for ``/health``.
    :param host: loopback address to listen on.
    :param client_port: client port; default a free port.
    :param peer_port: peer port; default a free port.
    :param initial_cluster: ``name=peer_url,...`` for ``--initial-cluster``;
        default just this member.  :class:`EtcdCluster` sets it.
    :param initial_cluster_token: ``--initial-cluster-token``; default a fresh
        random token, so servers on recycled ports never join each other.
    :param client_certfile: certificate the harness (health polls, etcdctl)
        presents when client certificates are required; default *certfile*
        (it needs the ``clientAuth`` usage, which ``trustme`` leaf
        certificates have).
    :param client_keyfile: key for *client_certfile*; default *keyfile*.
    :param ca_file: CA bundle the harness uses to verify the server's
        certificate; not passed to etcd.  Default *trusted_ca_file*; if both
        are missing the harness does not verify the server.
    :raises ValueError: only one of *certfile* / *keyfile* given, TLS options
        without *certfile*, or *client_cert_auth* without *trusted_ca_file*.
    :raises FileNotFoundError: no etcd binary (from :func:`find_etcd_binary`).
    """

    def __init__(
        self,
        *,
        enable_v2: bool = True,
        binary: str | None = None,
        name: str = "default",
        certfile: str | None = None,
        keyfile: str | None = None,
        trusted_ca_file: str | None = None,
        client_cert_auth: bool = False,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        initial_cluster_token: str | None = None,
        client_certfile: str | None = None,
        client_keyfile: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        if (certfile is None) != (keyfile is None):
            raise ValueError("certfile and keyfile go together")
        if certfile is None and (trusted_ca_file or client_cert_auth or ca_file):
            raise ValueError("TLS options need certfile and keyfile")
        if client_cert_auth and not trusted_ca_file:
            raise ValueError("client_cert_auth needs trusted_ca_file (the CA of client certs)")
        self.enable_v2 = enable_v2
        self.binary = os.path.abspath(binary) if binary else find_etcd_binary("etcd")
        self.name = name
        # etcd runs in its work directory, so relative paths are resolved now.
        self.certfile = _abspath(certfile)
        self.keyfile = _abspath(keyfile)
        self.trusted_ca_file = _abspath(trusted_ca_file)
        self.client_cert_auth = client_cert_auth
        self.client_certfile = _abspath(client_certfile) or self.certfile
        self.client_keyfile = _abspath(client_keyfile) or self.keyfile
        self.ca_file = _abspath(ca_file) or self.trusted_ca_file
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._host = host
        # Ports we chose ourselves may be re-chosen if another process grabs
        # them before the first start; ports given by the caller are fixed.
        self._auto_ports = client_port is None and peer_port is None
        if client_port is None or peer_port is None:
            free = iter(_free_ports(2, host))
            client_port = client_port or next(free)
            peer_port = peer_port or next(free)
        self._port = client_port
        self._peer_port = peer_port
        self._initial_cluster = initial_cluster
        self.initial_cluster_token = initial_cluster_token or f"link-etcd-{uuid.uuid4().hex}"
        self._work_dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._kept_log = ""
        self._atexit_registered = False
        self._has_started = False

    # -- addresses ---------------------------------------------------------

    @property
    def scheme(self) -> str:
        """``"https"`` when a server certificate was given, else ``"http"``."""
        return "https" if self.certfile else "http"

    @property
    def host(self) -> str:
        """Address the client URL listens on, e.g. ``"127.0.0.1"``."""
        return self._host

    @property
    def port(self) -> int:
        """Client port (int)."""
        return self._port

    @property
    def peer_port(self) -> int:
        """Peer (raft) port (int)."""
        return self._peer_port

    @property
    def endpoint(self) -> str:
        """Client URL, e.g. ``"http://127.0.0.1:23791"``."""
        return f"{self.scheme}://{self._host}:{self._port}"

    @property
    def endpoints(self) -> tuple[str, ...]:
        """``(endpoint,)``, for code that takes a list of endpoints."""
        return (self.endpoint,)

    @property
    def peer_url(self) -> str:
        """Peer URL, e.g. ``"http://127.0.0.1:23792"`` (peers always talk plain HTTP)."""
        return f"http://{self._host}:{self._peer_port}"

    @property
    def requires_client_cert(self) -> bool:
        """True if etcd demands client certificates (*trusted_ca_file* or *client_cert_auth*)."""
        return bool(self.trusted_ca_file or self.client_cert_auth)

    @property
    def data_dir(self) -> str | None:
        """etcd data directory, or ``None`` before :meth:`start` and after :meth:`stop`."""
        return os.path.join(self._work_dir, "data") if self._work_dir else None

    @property
    def log_path(self) -> str | None:
        """Server log file (stdout and stderr, appended across restarts), or ``None``."""
        return os.path.join(self._work_dir, "etcd.log") if self._work_dir else None

    @property
    def running(self) -> bool:
        """True while the etcd process is alive (it may not be healthy yet)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running etcd, or ``None``."""
        return self._proc.pid if self.running and self._proc else None

    def __repr__(self) -> str:
        if self.running:
            state = "running"
        elif self._work_dir:
            state = "stopped, data kept"
        else:
            state = "stopped"
        return f"<EtcdServer {self.name} {self.endpoint} {state}>"

    # -- lifecycle ---------------------------------------------------------

    def command(self) -> list[str]:
        """The etcd command line :meth:`start` runs (list of str).

        :raises RuntimeError: no data directory yet (call :meth:`start`).
        """
        if self.data_dir is None:
            raise RuntimeError("no data directory yet; call start()")
        client_url = self.endpoint
        cmd = [
            self.binary,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self._initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-token", self.initial_cluster_token,
            "--initial-cluster-state", "new",
        ]  # fmt: skip
        if self.enable_v2:
            cmd.append("--enable-v2=true")
        if self.certfile and self.keyfile:
            cmd += ["--cert-file", self.certfile, "--key-file", self.keyfile]
        if self.trusted_ca_file:
            cmd += ["--trusted-ca-file", self.trusted_ca_file]
        if self.client_cert_auth:
            cmd.append("--client-cert-auth=true")
        cmd += self.extra_args
        return cmd

    def start(self, wait: bool = True) -> EtcdServer:
        """Start etcd and, by default, wait until ``/health`` says ``"true"``.

        Keeps the data directory of an earlier :meth:`kill` (keys survive);
        otherwise creates a fresh one.  Registers :meth:`stop` with
        :mod:`atexit`.  If the very first start fails because another process
        took one of the automatically chosen ports, it retries twice on new
        ports.

        :param wait: False to return as soon as the process is launched (then
            call :meth:`wait_ready`); :class:`EtcdCluster` uses this so that
            members can find each other.
        :returns: self.
        :raises RuntimeError: already running, or (with *wait*) the process
            exited or did not become healthy within :attr:`startup_timeout`
            seconds; the message includes the log tail.  The process is
            killed then; the data directory and log stay until :meth:`stop`.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        attempts = 3 if (self._auto_ports and not self._has_started) else 1
        for attempt in range(attempts):
            self._launch()
            if not wait:
                return self
            try:
                self.wait_ready()
            except RuntimeError:
                self._terminate(signal.SIGKILL)
                if attempt + 1 < attempts and "address already in use" in self.log_text(tail=30):
                    self._discard()
                    self._port, self._peer_port = _free_ports(2, self._host)
                    continue
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        if self._work_dir is None:
            self._work_dir = tempfile.mkdtemp(prefix=f"link-etcd-{self.name}-")
            self._kept_log = ""
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        assert self.log_path is not None
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._work_dir,
        )
        self._has_started = True

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``GET {endpoint}/health`` until it answers ``{"health": "true"}``.

        :param timeout: seconds; default :attr:`startup_timeout`.
        :raises RuntimeError: the process is not running or exits, or the
            timeout passes; the message includes the last 30 log lines.
        """
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        delay = 0.02
        while True:
            if not self.running:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(
                    f"etcd {self.name} at {self.endpoint} is not running (exit status {code}); "
                    f"log tail:\n{self.log_text(tail=30)}"
                )
            # never wait past the deadline for one answer
            healthy, last = self.health(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            if healthy:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"etcd {self.name} at {self.endpoint} not healthy after {timeout:.1f} s "
                    f"(last answer: {last}); log tail:\n{self.log_text(tail=30)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def health(self, timeout: float = 1.0) -> tuple[bool, str]:
        """Ask ``GET {endpoint}/health`` once.

        :param timeout: seconds for the HTTP request.
        :returns: ``(healthy, detail)``: *healthy* is True only for
            ``{"health": "true"}``; *detail* is the body or the error text.
            Never raises for network or HTTP errors.
        """
        try:
            body = _http(self.endpoint + "/health", None, self.ssl_context(), timeout)
        except urllib.error.HTTPError as exc:  # 503 while there is no leader
            return False, f"HTTP {exc.code}: {exc.read().decode('utf-8', 'replace')}"
        except (OSError, ValueError) as exc:  # refused, reset, TLS, timeout
            return False, repr(exc)
        try:
            healthy = json.loads(body).get("health") == "true"
        except (ValueError, AttributeError):
            healthy = False
        return healthy, body

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """Return ``POST {endpoint}/v3/maintenance/status`` (the JSON gateway).

        :param timeout: seconds for the HTTP request.
        :returns: the decoded answer, e.g. ``{"header": {"member_id": "...",
            ...}, "leader": "...", "version": "3.5.1", ...}`` (int64 values
            are strings).
        :raises OSError: the server did not answer (``urllib.error.URLError``
            and ``HTTPError`` are ``OSError`` subclasses).
        """
        body = _http(self.endpoint + "/v3/maintenance/status", b"{}", self.ssl_context(), timeout)
        result: dict[str, Any] = json.loads(body)
        return result

    def ssl_context(self) -> ssl.SSLContext | None:
        """An :class:`ssl.SSLContext` that can talk to this server, or None for http.

        Verifies the server with *ca_file* (no verification without one) and
        loads the client certificate when the server requires one.
        """
        if self.scheme != "https":
            return None
        if self.ca_file:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.requires_client_cert and self.client_certfile:
            ctx.load_cert_chain(self.client_certfile, self.client_keyfile)
        return ctx

    def _signal(self, sig: int) -> None:
        """Send *sig* to the process if it runs; do not wait."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def _terminate(self, sig: int) -> None:
        """Send *sig*, wait; escalate to SIGKILL after :data:`STOP_GRACE` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            if sig != signal.SIGKILL:
                proc.send_signal(signal.SIGCONT)  # a paused process handles it only now
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self, graceful: bool = False) -> None:
        """Stop the process but keep data directory and ports; :meth:`start` brings it back.

        :param graceful: False (default) sends SIGKILL, like a crash; True
            sends SIGTERM (escalating to SIGKILL after 5 s).
        """
        self._terminate(signal.SIGTERM if graceful else signal.SIGKILL)

    def restart(self, wait: bool = True) -> EtcdServer:
        """Stop the process (SIGTERM) and start it again on the same ports and data.

        :param wait: as for :meth:`start`.
        :returns: self.
        :raises RuntimeError: as for :meth:`start`.
        """
        self._terminate(signal.SIGTERM)
        return self.start(wait=wait)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP), like a member that hangs: the kernel still
        accepts connections and reads requests into its buffers, but nothing is
        answered until :meth:`resume`.  :meth:`kill`, :meth:`restart` and
        :meth:`stop` work on a paused server.

        :raises RuntimeError: not running.
        """
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT); nothing happens if it runs."""
        self._signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[EtcdServer]:
        """:meth:`pause` for the ``with`` block, :meth:`resume` after it (always)."""
        self.pause()
        try:
            yield self
        finally:
            self.resume()

    def hashkv(self, revision: int) -> int:
        """The hash of this member's whole keyspace at ``revision`` (``etcdctl
        endpoint hashkv --rev``): members holding the same keys, values and
        history up to ``revision`` give the same hash.

        :param revision: a revision every compared member has applied (not compacted).
        :raises EtcdctlError: etcdctl failed (member down, revision compacted).
        """
        out = self.etcdctl("endpoint", "hashkv", f"--rev={revision}", "-w", "json").stdout
        return int(json.loads(out)[0]["HashKV"]["hash"])

    def _discard(self) -> None:
        """Stop the process and delete the work directory (data and log)."""
        self._terminate(signal.SIGTERM)
        if self._work_dir is not None:
            self._kept_log = self._read_log(_KEPT_LOG_LINES)
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def stop(self) -> None:
        """Stop etcd (SIGTERM, SIGKILL after 5 s) and delete its data and log.

        Idempotent and safe to call before :meth:`start`.  The last 500 log
        lines stay readable through :meth:`log_text`.  Calling :meth:`start`
        afterwards starts an empty server on the same ports.
        """
        self._discard()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def __enter__(self) -> EtcdServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- log and tools -----------------------------------------------------

    def _read_log(self, tail: int | None) -> str:
        path = self.log_path
        if path is None or not os.path.exists(path):
            return self._kept_log if tail is None else _tail(self._kept_log, tail)
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        return text if tail is None else _tail(text, tail)

    def log_text(self, tail: int | None = None) -> str:
        """Return the server log (etcd's JSON lines, stdout and stderr).

        :param tail: only the last *tail* lines; None for all.
        :returns: the text; after :meth:`stop`, at most the last 500 lines;
            ``""`` if the server never started.
        """
        return self._read_log(tail)

    def _tls_args(self) -> list[str]:
        if self.scheme != "https":
            return []
        args = [f"--cacert={self.ca_file}"] if self.ca_file else ["--insecure-skip-tls-verify"]
        if self.requires_client_cert and self.client_certfile and self.client_keyfile:
            args += [f"--cert={self.client_certfile}", f"--key={self.client_keyfile}"]
        return args

    def etcdctl_binary(self) -> str:
        """Path of ``etcdctl``: next to :attr:`binary`, else :func:`find_etcd_binary`."""
        sibling = os.path.join(os.path.dirname(self.binary), "etcdctl")
        return sibling if os.path.isfile(sibling) else find_etcd_binary("etcdctl")

    def etcdctl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``etcdctl --endpoints=<endpoint> [TLS flags] *args`` (v3 API).

        TLS flags (``--cacert``, ``--cert``, ``--key``) follow the server's
        configuration.  Inherited ``ETCDCTL_*`` variables are dropped (etcdctl
        rejects a variable that a flag also sets); ``ETCDCTL_API=3``.  Pass
        ``--user=root:pw`` in *args* once auth is on.

        :param args: etcdctl arguments, e.g. ``("put", "/k", "v")``.
        :param input: text fed to stdin (default: stdin is ``/dev/null``).
        :param check: raise on a non-zero exit status.
        :param env: extra environment variables (they win).
        :returns: the completed process; ``stdout``/``stderr`` are str.
        :raises EtcdctlError: *check* and a non-zero exit (a
            :class:`subprocess.CalledProcessError` whose ``str`` shows stderr).
        :raises subprocess.TimeoutExpired: etcdctl ran over 30 s.
        :raises FileNotFoundError: no etcdctl binary.
        """
        return _run_etcdctl(
            self.etcdctl_binary(), [self.endpoint], self._tls_args(), args, input, check, env
        )

    def enable_auth(self, root_password: str) -> None:
        """Turn on v3 authentication with a ``root`` user.

        Runs ``etcdctl user add root --interactive=false`` (password on stdin,
        so it never appears in a command line) and ``etcdctl auth enable``
        (which grants ``root`` the root role).  v2 auth is left off.  Later
        etcdctl calls need ``--user=root:<password>``.  This changes the
        server for good: do it on your own :class:`EtcdServer`, not on the
        shared ``etcd_server`` fixture.

        :param root_password: password for ``root``.
        :raises EtcdctlError: etcdctl failed (e.g. auth already enabled).
        """
        self.etcdctl("user", "add", "root", "--interactive=false", input=root_password + "\n")
        self.etcdctl("auth", "enable")


def _abspath(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def _tail(text: str, lines: int) -> str:
    if lines <= 0:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


def _http(url: str, data: bytes | None, context: ssl.SSLContext | None, timeout: float) -> str:
    """GET (or POST *data*) *url* ignoring proxy settings; return the body as text.

    :raises urllib.error.HTTPError: non-2xx answer.
    :raises OSError: no answer (refused, reset, TLS failure, timeout).
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    with opener.open(url, data=data, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8", "replace")


class ExternalEtcdServer:
    """An etcd server this harness did not start (``LINK_ETCD_TEST_ENDPOINT``).

    Offers the read-only part of :class:`EtcdServer`: addresses, :meth:`etcdctl`
    (plain ``--endpoints``, no TLS flags) and an empty :meth:`log_text`.  It
    cannot be stopped, killed or restarted.

    :param endpoint: client URL such as ``"http://127.0.0.1:2379"``.
    :raises ValueError: the URL has no host or port.
    """

    def __init__(self, endpoint: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(endpoint.rstrip("/"))
        if not parts.hostname or not parts.port:
            raise ValueError(f"endpoint needs scheme, host and port: {endpoint!r}")
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.running = True

    @property
    def endpoints(self) -> tuple[str, ...]:
        """``(endpoint,)``."""
        return (self.endpoint,)

    def __repr__(self) -> str:
        return f"<ExternalEtcdServer {self.endpoint}>"

    def log_text(self, tail: int | None = None) -> str:
        """Always ``""``: the log of an external server is not available."""
        return ""

    def etcdctl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run etcdctl against the external endpoint; see :meth:`EtcdServer.etcdctl`."""
        return _run_etcdctl(
            find_etcd_binary("etcdctl"), [self.endpoint], [], args, input, check, env
        )
