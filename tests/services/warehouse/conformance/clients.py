"""The real clients of the conformance suite, installed from their own registries into
``.cache/conformance`` once and rebuilt only when their program changes (downloads go through
each toolchain's own per-user cache: Go's module cache, ~/.m2, npm's cache). Each ``*_command``
returns the command that runs the client's checks, or raises ``Missing`` naming the toolchain
that is absent."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parents[3] / ".cache" / "conformance"
BUILD_TIMEOUT_S = 900  # the first run downloads the clients; later runs reuse them


class Missing(Exception):
    """A toolchain the client needs is not on this machine."""


def _need(*tools: str) -> None:
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        raise Missing(f"{', '.join(absent)} not installed")


def _stamp(*files: Path) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def _fresh(target: Path, stamp: str) -> bool:
    marker = target.with_name(target.name + ".stamp")
    return target.exists() and marker.exists() and marker.read_text() == stamp


def _mark(target: Path, stamp: str) -> None:
    target.with_name(target.name + ".stamp").write_text(stamp)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-3000:]}")


def go_command() -> list[str]:
    """clickhouse-go v2 (the version go.mod names), built into one binary."""
    _need("go")
    src = HERE / "go"
    binary = CACHE / "go-client"
    stamp = _stamp(src / "main.go", src / "go.mod", src / "go.sum")
    if not _fresh(binary, stamp):
        CACHE.mkdir(parents=True, exist_ok=True)
        # modules and build cache in Go's own per-user caches, so that every clone reuses them
        _run(["go", "build", "-o", str(binary), "."], src,
             {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
        _mark(binary, stamp)
    return [str(binary)]


NODE_CLIENT = "@clickhouse/client@1.23.1"


def node_command() -> tuple[list[str], dict[str, str]]:
    """@clickhouse/client from npm, installed into the cache."""
    _need("node", "npm")
    root = CACHE / "node"
    modules = root / "node_modules"
    if not _fresh(modules, NODE_CLIENT):
        root.mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "--silent", NODE_CLIENT], root)
        _mark(modules, NODE_CLIENT)
    return (["node", str(HERE / "node" / "check.mjs")], {"CLIENT_MODULES": str(modules)})


def java_command() -> list[str]:
    """ClickHouse JDBC 0.10.0 and its dependencies from Maven Central, and the check program."""
    _need("java", "javac", "mvn")
    src = HERE / "java"
    lib = CACHE / "java" / "lib"
    classes = CACHE / "java" / "classes"
    pom_stamp = _stamp(src / "pom.xml")
    if not _fresh(lib, pom_stamp):
        _run(["mvn", "-q", "-B", "-f", str(src / "pom.xml"), "dependency:copy-dependencies",
              f"-DoutputDirectory={lib}"], src)  # jars come through the user's ~/.m2
        _mark(lib, pom_stamp)
    code_stamp = _stamp(src / "Check.java", src / "pom.xml")
    if not _fresh(classes, code_stamp):
        classes.mkdir(parents=True, exist_ok=True)
        _run(["javac", "-d", str(classes), "-cp", f"{lib}/*", str(src / "Check.java")], src)
        _mark(classes, code_stamp)
    return ["java", "-cp", f"{classes}:{lib}/*", "Check"]


def results(output: str) -> dict[str, str]:
    """``ok NAME`` / ``fail NAME: why`` lines as {name: "" when ok, else why}."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("ok "):
            out[line[3:].strip()] = ""
        elif line.startswith("fail "):
            name, _, why = line[5:].partition(":")
            out[name.strip()] = why.strip() or "failed"
    return out
