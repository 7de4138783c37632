"""A real Apache Kafka broker on this machine: one combined broker+controller in KRaft mode.

The jars come from Maven Central (``deploy/kafka/pom.xml``) into a cache folder, once. Used by
``make run``/``make kafka`` (fixed ports, a data folder under ``.cache``) and by the test
harness (free ports, a temporary folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
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
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

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
        try:
            pid = int(self.pidfile.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _properties(self) -> Path:
        template = (DEPLOY / "server.properties").read_text()
        text = template.format(
            port=self.port, controller_port=self.controller_port, log_dir=self.data / "log"
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
        cluster_id = subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        subprocess.run(
            self._java(libs, "kafka.tools.StorageTool", "format", "--standalone",
                       f"--cluster-id={cluster_id}", "-c", str(props)),
            capture_output=True, text=True, check=True,
        )

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker in the background; return False if it was already running."""
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
        self._wait_ready(proc, timeout)
        return True

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaSetupError(
                    f"the broker exited with {proc.returncode}; see {self.logfile}:\n"
                    + self.logfile.read_text(errors="replace")[-3000:]
                )
            if port_open(self.port) and READY_LINE in self.logfile.read_text(errors="replace"):
                return
            time.sleep(0.2)
        self.stop()
        raise KafkaSetupError(f"the broker did not start within {timeout:.0f}s; see {self.logfile}")

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


def _reap(pid: int) -> None:
    """Collect our own child's exit status so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def default_broker() -> LocalKafka:
    return LocalKafka(data=CACHE / "kafka" / "data")
