"""A real Apache Kafka broker on this machine: one combined broker+controller in KRaft mode,
or a cluster of three such nodes (``LocalKafkaCluster``) for fault tests.

The jars come from Maven Central (``deploy/kafka/pom.xml``) into a cache folder, once. Used by
``make run``/``make kafka`` (fixed ports, a data folder under ``.cache``), by the test harness
(free ports, a temporary folder) and by the fault suite (``python -m chaos``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kafka"
CACHE = Path(os.environ.get("GPUFLEET_CACHE", ROOT / ".cache"))
READY_LINE = "Kafka Server started"


class KafkaSetupError(Exception):
    """Something the broker needs is missing; the message says what to do."""


def _need(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaSetupError(
            f"`{tool}` not found: the local Kafka broker needs {what} "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven)"
        )
    return path


def jars_dir() -> Path:
    return CACHE / "kafka" / "libs"


def ensure_jars(quiet: bool = False) -> Path:
    """Download the broker's jars once; later calls find them in the cache."""
    libs = jars_dir()
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    _need("java", "Java 17 or newer")
    mvn = _need("mvn", "Maven, to fetch its jars from Maven Central")
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    if not quiet:
        print("fetching Apache Kafka jars from Maven Central (once) ...", file=sys.stderr)
    cmd = [mvn, "-q", "-B", "-f", str(DEPLOY / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise KafkaSetupError("mvn could not fetch the Kafka jars:\n" + done.stdout[-2000:])
    partial.rename(libs)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int, low: int = 20000, high: int = 60000) -> int:
    """The first of ``n`` consecutive ports that are all free now (for ``gpufleet up
    --base-port``)."""
    for _ in range(200):
        base = low + (uuid.uuid4().int % (high - low - n))
        if not any(port_open(base + i) for i in range(n)) and _bindable(base, n):
            return base
    raise KafkaSetupError(f"no {n} consecutive free ports found")


def _bindable(base: int, n: int) -> bool:
    for port in range(base, base + n):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding (as Kafka writes one)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class LocalKafka:
    data: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    node_id: int = 1
    voters: str = ""  # a cluster's static quorum ("1@localhost:p1,..."); empty: standalone
    cluster_id: str = ""  # a cluster's id (all its nodes share it); empty: a new one
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_start: int = field(default=0, init=False, repr=False)  # where this run's log begins

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.data / "broker.pid"

    @property
    def logfile(self) -> Path:
        return self.data / "broker.log"

    def running_pid(self) -> int | None:
        """The pid of this folder's broker if it is alive, else None."""
        if self._proc is not None and self._proc.poll() is not None:
            return None  # ours, and dead (collected, so not mistaken for a live pid)
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _properties(self) -> Path:
        name = "cluster.properties" if self.voters else "server.properties"
        text = (DEPLOY / name).read_text().format(
            port=self.port, controller_port=self.controller_port, log_dir=self.data / "log",
            node_id=self.node_id, voters=self.voters,
        )
        path = self.data / "server.properties"
        path.write_text(text)
        return path

    def _java(self, libs: Path, *args: str) -> list[str]:
        return [
            _need("java", "Java 17 or newer"), f"-Xmx{self.heap}", "-Xms128m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data}", "-cp", f"{libs}/*", *args,
        ]

    def _format(self, libs: Path, props: Path) -> None:
        if (self.data / "log" / "meta.properties").exists():
            return
        # A static quorum (voters in the properties) is formatted as it is; one node alone
        # formats itself as the whole quorum.
        how = [] if self.voters else ["--standalone"]
        done = subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "format", *how,
                       f"--cluster-id={self.cluster_id or new_cluster_id()}", "-c", str(props)),
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise KafkaSetupError(f"formatting {self.data} failed:\n{done.stdout[-2000:]}"
                                  f"{done.stderr[-2000:]}")

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker in the background; return False if it was already running."""
        if not self.launch():
            return False
        assert self._proc is not None
        self._wait_ready(self._proc, timeout)
        return True

    def launch(self) -> bool:
        """Start the broker's process without waiting for it; False if it was running."""
        self.data.mkdir(parents=True, exist_ok=True)
        if self.running_pid() is not None and port_open(self.port):
            return False
        if port_open(self.port):
            raise KafkaSetupError(f"port {self.port} is taken by another program")
        libs = ensure_jars()
        props = self._properties()
        self._format(libs, props)
        with self.logfile.open("ab") as log:  # the broker keeps its own handle
            proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._proc = proc
        self.pidfile.write_text(str(proc.pid))
        self._log_start = self.logfile.stat().st_size
        return True

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until a launched broker serves (raise KafkaSetupError if it does not)."""
        if self._proc is None:
            raise KafkaSetupError("the broker was not launched from here")
        self._wait_ready(self._proc, timeout)

    def _this_run_log(self) -> str:
        with self.logfile.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaSetupError(
                    f"the broker exited with {proc.returncode}; see {self.logfile}:\n"
                    + self.logfile.read_text(errors="replace")[-3000:]
                )
            if port_open(self.port) and READY_LINE in self._this_run_log():
                return
            time.sleep(0.2)
        self.stop()
        raise KafkaSetupError(f"the broker did not start within {timeout:.0f}s; see {self.logfile}")

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send the broker a signal (a fault on purpose) and collect it if it ends."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        if sig == signal.SIGKILL and self._proc is not None:
            self._proc.wait()
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL); return False if none ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            _reap(pid)
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self.pidfile.unlink(missing_ok=True)
        return True


@dataclass
class LocalKafkaCluster:
    """``size`` combined broker+controller nodes on free ports, one static KRaft quorum:
    topics default to replication factor 3 with ``min.insync.replicas=2``, so one node may be
    killed and started again under load."""

    data: Path
    size: int = 3
    heap: str = "384m"
    nodes: list[LocalKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        voters = ",".join(f"{i + 1}@localhost:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = new_cluster_id()
        self.nodes = [
            LocalKafka(data=self.data / f"node{i + 1}", port=p, controller_port=c, heap=self.heap,
                       node_id=i + 1, voters=voters, cluster_id=cluster_id)
            for i, (p, c) in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self, timeout: float = 120.0) -> None:
        """Start every node (they elect a controller among themselves), then wait for all."""
        for node in self.nodes:
            node.launch()
        try:
            for node in self.nodes:
                node.wait_ready(timeout)
        except KafkaSetupError:
            self.stop()
            raise

    def kill(self, index: int, sig: int = signal.SIGKILL) -> bool:
        """A fault: one node gets ``sig`` (SIGKILL by default: no clean shutdown)."""
        node = self.nodes[index]
        return node.kill(sig) if sig == signal.SIGKILL else node.stop()

    def restart(self, index: int, timeout: float = 120.0) -> None:
        self.nodes[index].start(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """All nodes at once (one by one, the last ones would wait for a quorum that is gone)."""
        for node in self.nodes:
            pid = node.running_pid()
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def default_broker() -> LocalKafka:
    return LocalKafka(data=CACHE / "kafka" / "data")
