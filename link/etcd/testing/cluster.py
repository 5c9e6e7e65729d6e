"""Several real etcd members on loopback forming one cluster: :class:`EtcdCluster`."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType

from .binaries import find_etcd_binary
from .server import EtcdServer, _free_ports, _run_etcdctl

__all__ = ["EtcdCluster"]


class EtcdCluster:
    """*size* :class:`EtcdServer` members on loopback forming one etcd cluster.

    All ports are chosen up front and the members share one
    ``--initial-cluster`` string and a random cluster token.  :meth:`start`
    launches every process first and then polls each member's health, since
    a member only becomes healthy once a quorum is up.  Members can be
    killed and started again one by one (``cluster.members[0].kill()``,
    ``cluster.members[0].start()``) for failover tests.

    Members are named ``m0``, ``m1``, ...; peers talk plain HTTP.  Every other
    argument is the one of :class:`EtcdServer`, applied to every member.

    :param size: number of members (>= 1).
    :param enable_v2: as for :class:`EtcdServer`.
    :param binary: as for :class:`EtcdServer`.
    :param certfile: as for :class:`EtcdServer`.
    :param keyfile: as for :class:`EtcdServer`.
    :param trusted_ca_file: as for :class:`EtcdServer`.
    :param ca_file: as for :class:`EtcdServer`.
    :param client_cert_auth: as for :class:`EtcdServer`.
    :param extra_args: as for :class:`EtcdServer`.
    :param startup_timeout: seconds each member may take to become healthy.
    :param host: loopback address every member listens on.
    :raises ValueError: *size* < 1.
    :raises FileNotFoundError: no etcd binary.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        enable_v2: bool = True,
        binary: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        trusted_ca_file: str | None = None,
        ca_file: str | None = None,
        client_cert_auth: bool = False,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        host: str = "127.0.0.1",
    ) -> None:
        if size < 1:
            raise ValueError("an etcd cluster needs at least one member")
        binary = binary or find_etcd_binary("etcd")
        ports = _free_ports(2 * size, host)
        names = [f"m{i}" for i in range(size)]
        initial = ",".join(f"{n}=http://{host}:{ports[2 * i + 1]}" for i, n in enumerate(names))
        token = f"link-etcd-{uuid.uuid4().hex}"
        self.members: list[EtcdServer] = [
            EtcdServer(
                enable_v2=enable_v2,
                binary=binary,
                name=n,
                certfile=certfile,
                keyfile=keyfile,
                trusted_ca_file=trusted_ca_file,
                ca_file=ca_file,
                client_cert_auth=client_cert_auth,
                extra_args=extra_args,
                startup_timeout=startup_timeout,
                host=host,
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                initial_cluster=initial,
                initial_cluster_token=token,
            )
            for i, n in enumerate(names)
        ]

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Client URLs of all members, in member order."""
        return tuple(m.endpoint for m in self.members)

    @property
    def running(self) -> bool:
        """True if every member process is alive."""
        return all(m.running for m in self.members)

    def __repr__(self) -> str:
        up = sum(m.running for m in self.members)
        return f"<EtcdCluster {','.join(self.endpoints)} {up}/{len(self.members)} running>"

    def start(self) -> EtcdCluster:
        """Launch every member that is not running, then wait until each is healthy.

        :returns: self.
        :raises RuntimeError: a member exited or stayed unhealthy past its
            ``startup_timeout``; all members are stopped first.
        """
        try:
            for member in self.members:
                if not member.running:
                    member.start(wait=False)
            for member in self.members:
                member.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every member and delete their data (idempotent).

        Members get SIGKILL: their data is deleted anyway, and a graceful
        shutdown of a whole cluster waits seconds for leadership transfers
        and elections that cannot finish.
        """
        for member in self.members:
            member._signal(signal.SIGKILL)
        for member in self.members:
            member.stop()

    def etcdctl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run etcdctl against all members' endpoints; see :meth:`EtcdServer.etcdctl`."""
        first = self.members[0]
        return _run_etcdctl(
            first.etcdctl_binary(), self.endpoints, first._tls_args(), args, input, check, env
        )

    def hashkv(self, revision: int) -> dict[str, int]:
        """:meth:`EtcdServer.hashkv` of every running member at ``revision``, by
        endpoint: one value when the members agree."""
        return {m.endpoint: m.hashkv(revision) for m in self.members if m.running}

    def leader(self) -> EtcdServer:
        """Return the running member that is raft leader now.

        Asks each running member's :meth:`EtcdServer.status` whether it
        leads itself.

        :raises RuntimeError: no running member is leader (e.g. during an
            election); see :meth:`wait_for_leader`.
        """
        for member in self.members:
            if not member.running:
                continue
            try:
                status = member.status(timeout=1.0)
            except (OSError, ValueError):
                continue
            leader = status.get("leader")
            if leader and leader == status.get("header", {}).get("member_id"):
                return member
        raise RuntimeError(f"no leader among {self!r}")

    def wait_for_leader(self, timeout: float = 30.0) -> EtcdServer:
        """Poll :meth:`leader` until a running member leads, e.g. after killing the leader.

        :param timeout: seconds.
        :returns: the leading member.
        :raises RuntimeError: no leader within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.leader()
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
