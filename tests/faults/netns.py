"""An etcd cluster whose members each run in a network namespace of their own, so
that a test can cut one member off from its peers while clients still reach it.

Topology (made with ``ip``; root is needed, iptables is not)::

    test process (root namespace)
      │ veth 10.213.<k>.<4i+1>/30 ── 10.213.<k>.<4i+2>  member i: client URL, :2379
      │                                 (namespace lk<k>m<i>)
      └ hub namespace lk<k>hub: a bridge joining every member's peer veth
                                        10.214.<k>.<i+1>/24  member i: peer URL, :2380

:meth:`NetnsCluster.cut` takes member ``i``'s port on the bridge down: it loses
its peers (a partition: the majority elects or keeps a leader without it) but
keeps answering clients on its client veth, which is what makes a stale read or
a watch stuck on it possible.  :meth:`NetnsCluster.heal` brings the port back.

:func:`unavailable` says why this cannot run here (not root, no ``ip``, no
network namespaces), for a ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence

from link.etcd.testing import EtcdCluster, EtcdServer, find_etcd_binary

CLIENT_PORT = 2379
PEER_PORT = 2380
_numbers = itertools.count((os.getpid() * 7) % 200)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def unavailable() -> str | None:
    """Why namespaced clusters cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the fault suite as root)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    name = f"lkprobe{uuid.uuid4().hex[:6]}"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    bridge = _ip("-n", name, "link", "add", "name", "lkbr", "type", "bridge", check=False)
    _ip("netns", "del", name, check=False)
    if bridge.returncode != 0:
        return f"cannot create a bridge in a network namespace: {bridge.stderr.strip()}"
    return None


class NetnsServer(EtcdServer):
    """An :class:`EtcdServer` run inside network namespace ``netns``: clients use
    ``host`` (its client veth), peers ``peer_host`` (its bridge port)."""

    def __init__(self, *, netns: str, peer_host: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.netns = netns
        self.peer_host = peer_host

    @property
    def peer_url(self) -> str:
        return f"http://{self.peer_host}:{self.peer_port}"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]


class NetnsCluster(EtcdCluster):
    """``size`` members, each in its own network namespace (see the module's
    docstring); an :class:`EtcdCluster` otherwise (``start``, ``stop``,
    ``leader``, ``etcdctl``, members killed and started one by one).

    :param size: number of members.
    :param enable_v2, extra_args, startup_timeout: as for :class:`EtcdCluster`.
    :raises RuntimeError: ``ip`` failed to build the namespaces (the ones made
        are removed).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        enable_v2: bool = True,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        number = next(_numbers) % 250
        self.tag = f"lk{number}"
        self.hub = f"{self.tag}hub"
        self._namespaces: list[str] = []
        self._host_links: list[str] = []
        binary = find_etcd_binary("etcd")
        names = [f"m{i}" for i in range(size)]
        peer_hosts = [f"10.214.{number}.{i + 1}" for i in range(size)]
        initial = ",".join(
            f"{name}=http://{host}:{PEER_PORT}"
            for name, host in zip(names, peer_hosts, strict=True)
        )
        token = f"link-etcd-{uuid.uuid4().hex}"
        self.members: list[EtcdServer] = [
            NetnsServer(
                netns=f"{self.tag}m{i}",
                peer_host=peer_hosts[i],
                enable_v2=enable_v2,
                binary=binary,
                name=names[i],
                extra_args=extra_args,
                startup_timeout=startup_timeout,
                host=f"10.213.{number}.{4 * i + 2}",
                client_port=CLIENT_PORT,
                peer_port=PEER_PORT,
                initial_cluster=initial,
                initial_cluster_token=token,
            )
            for i in range(size)
        ]
        try:
            self._build(number)
        except BaseException:
            self._teardown()
            raise

    def _build(self, number: int) -> None:
        self._add_netns(self.hub)
        _ip("-n", self.hub, "link", "add", "name", "lkbr", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "lkbr", "up")
        for i, member in enumerate(self.members):
            ns = f"{self.tag}m{i}"
            self._add_netns(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            host_side = f"{self.tag}c{i}"
            _ip("link", "add", host_side, "type", "veth", "peer", "name", "c", "netns", ns)
            self._host_links.append(host_side)
            _ip("addr", "add", f"10.213.{number}.{4 * i + 1}/30", "dev", host_side)
            _ip("link", "set", host_side, "up")
            _ip("-n", ns, "addr", "add", f"{member.host}/30", "dev", "c")
            _ip("-n", ns, "link", "set", "c", "up")
            _ip(
                "-n",
                ns,
                "link",
                "add",
                "p",
                "type",
                "veth",
                "peer",
                "name",
                f"h{i}",
                "netns",
                self.hub,
            )
            _ip("-n", ns, "addr", "add", f"10.214.{number}.{i + 1}/24", "dev", "p")
            _ip("-n", ns, "link", "set", "p", "up")
            _ip("-n", self.hub, "link", "set", f"h{i}", "master", "lkbr")
            _ip("-n", self.hub, "link", "set", f"h{i}", "up")

    def _add_netns(self, name: str) -> None:
        _ip("netns", "del", name, check=False)  # left by a crashed run
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def cut(self, index: int) -> None:
        """Cut member ``index`` off from its peers (clients still reach it)."""
        _ip("-n", self.hub, "link", "set", f"h{index}", "down")

    def heal(self, index: int) -> None:
        """Join member ``index`` to its peers again."""
        _ip("-n", self.hub, "link", "set", f"h{index}", "up")

    def stop(self) -> None:
        """Stop every member, delete their data, remove the namespaces and links."""
        super().stop()
        self._teardown()

    def _teardown(self) -> None:
        for link in self._host_links:
            _ip("link", "del", link, check=False)
        self._host_links.clear()
        for name in self._namespaces:
            with contextlib.suppress(subprocess.SubprocessError):
                _ip("netns", "del", name, check=False)
        self._namespaces.clear()
