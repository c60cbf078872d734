"""A real ``redis-server`` for tests, on a free local port in its own temporary directory.

    with RedisServer() as server:           # or server.start() ... server.stop()
        client = redis.asyncio.Redis.from_url(server.url)

Persistence is off by default (``--save '' --appendonly no``); ``RedisServer(appendonly=True)``
turns the append-only file on (``appendfsync always`` unless told otherwise), and ``stop()``
followed by ``start()`` brings the same server back on the same port and data directory, so a
test can check what survives a restart; ``kill()`` ends it with SIGKILL, like a crash.
``start()`` returns once the server answers PING with PONG (not while it is still loading).
The process is stopped by its PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

REDIS_SERVER = os.environ.get(
    "REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server"
)


#: Where ``free_port`` looks first: below the kernel's ephemeral range (32768-60999 here), and
#: below the cluster bus ports (a node's port + 10000) of the ports it gives.
LISTEN_PORTS = (20_000, 30_000)
_GIVEN: deque[int] = deque(maxlen=1024)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may still take it first).

    Taken below the ephemeral range, where the kernel picks the source port of every outgoing
    connection: a port it handed out (port 0) could be given to a client's connection between
    this answer and the server's bind, which then failed with "address already in use" (a
    benchmark run lost that way). Never one of the last ports this process was given (two
    servers asked for ports before either binds), and port 0 only when no port there is free."""
    for port in random.sample(range(*LISTEN_PORTS), 64):
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _GIVEN.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server at ``host:port`` answers PING with PONG (RESP, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_pid(host: str, port: int, timeout: float = 2.0) -> int | None:
    """The ``process_id`` a Redis server at ``host:port`` reports, to know it is ours."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    for line in data.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


class RedisServer:
    """One ``redis-server`` process owned by a test: start, stop, restart, kill, clean up."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        appendfsync: str = "always",
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        executable: str = REDIS_SERVER,
        ready_timeout: float = 20.0,
    ) -> None:
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)
        self.host = host
        self.port = port if port is not None else 0
        self.executable = executable
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="wg-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the server process while it runs."""
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        """The server's log file, quoted in the error when it fails to start."""
        return self.dir / "redis.log"

    def argv(self) -> list[str]:
        """The command line ``start`` runs."""
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", self.appendfsync]
        return args + list(self.extra_args)

    def start(self) -> RedisServer:
        """Start the server (again, on the same port and directory after ``stop``)."""
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        if self.port:
            # A restart, or a port the caller chose: that port or nothing.
            if self._launch():
                return self
        else:
            # A free port can be taken between choosing and binding it: choose again then.
            for _ in range(5):
                self.port = free_port(self.host)
                if self._launch():
                    return self
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self._log_tail()}")

    def _launch(self) -> bool:
        """Run the server and wait for its PONG; False if it exited (the port was taken)."""
        process = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            # The PONG may come from another server that won the port: check the PID.
            if ping(self.host, self.port) and server_pid(self.host, self.port) == process.pid:
                self.process = process
                return True
            time.sleep(0.02)
        process.kill()
        process.wait()
        raise RuntimeError(f"redis-server did not answer PING in time: {self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server with SIGTERM (SIGKILL if it hangs); the data directory stays."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """End the server with SIGKILL, as a crash would; the data directory stays."""
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def free_cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port(host)
        if port + 10000 < 65536:
            with contextlib.suppress(OSError), socket.socket() as probe:
                probe.bind((host, port + 10000))
                return port
    raise RuntimeError("no free port with a free cluster bus port")


class RedisCluster:
    """``masters`` redis-servers joined into one Redis Cluster by ``redis-cli --cluster create``
    (the slots split evenly), each master with ``replicas`` replicas, on free ports; ``close``
    stops them all."""

    def __init__(self, masters: int = 3, host: str = "127.0.0.1", *, replicas: int = 0) -> None:
        self.host = host
        self.replicas = replicas
        self.nodes = [
            RedisServer(
                host=host,
                port=free_cluster_port(host),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-config-file",
                    "nodes.conf",
                ],
            )
            for _ in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` store URL with the first node as the seed."""
        return f"redis+cluster://{self.host}:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        """Start the nodes and create the cluster; wait until every node says it is ok and
        every replica is in sync with its master."""
        for node in self.nodes:
            node.start()
        addresses = [f"{self.host}:{node.port}" for node in self.nodes]
        if len(self.nodes) == 1:
            # redis-cli --cluster create wants 3 masters; one node takes every slot itself.
            self.cli(self.nodes[0], "cluster", "addslotsrange", "0", "16383")
        else:
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes",
                 "--cluster-replicas", str(self.replicas)],
                check=True,
                capture_output=True,
                timeout=60,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            live = [node for node in self.nodes if node.process is not None]
            states = [self.cli(node, "cluster", "info") for node in live]
            roles = [self.cli(node, "info", "replication") for node in live]
            synced = all("role:master" in role or "master_link_status:up" in role for role in roles)
            if all("cluster_state:ok" in state for state in states) and synced:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not become ok: {states} {roles}")

    def cli(self, node: RedisServer, *args: str) -> str:
        """What ``redis-cli`` run against ``node`` prints."""
        return subprocess.run(
            ["redis-cli", "-h", self.host, "-p", str(node.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now."""
        return [
            node
            for node in self.nodes
            if node.process is not None and "role:master" in self.cli(node, "info", "replication")
        ]

    def close(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
