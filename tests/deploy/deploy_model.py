"""What the deploy files say, read into plain values for the tests.

A ``Workload`` is one gpufleet container: where it is declared, the ``gpufleet`` arguments it
runs, and its environment (names, and values where they are literal or have a default).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.admin.config_cmd import SETTINGS
from gpufleet.config import BusSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
MIGRATIONS = ROOT / "services" / "warehouse" / "migrations"
IMAGE = "gpufleet"
K8S_KINDS = ("Deployment", "DaemonSet", "Job")

# The settings class each command reads.
SETTINGS_OF_COMMAND: dict[str, str] = {
    "topics": SETTINGS["bus"],
    "warehouse": SETTINGS["warehouse"],
    "telemetry": SETTINGS["telemetry"],
    "executor": SETTINGS["executor"],
    "ingest": SETTINGS["ingest"],
    "analytics": SETTINGS["analytics"],
    "scheduler": SETTINGS["scheduler"],
    "api": SETTINGS["api"],
    "fleet-sim": SETTINGS["fleet"],
    "demo-workload": SETTINGS["bus"],
}

# A value the deploy files fill in at run time, replaced by one an operator would give.
_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")
_EXAMPLE = "example"
_EXAMPLES = {"TENANT_QUOTAS": "team-a=16,team-b=8"}  # where "example" is no valid value


@dataclass
class Workload:
    origin: str  # "compose:ingest", "k8s:base/ingest.yaml:Deployment/ingest:ingest"
    argv: list[str]  # the gpufleet arguments; empty when the entrypoint is replaced
    env: dict[str, str | None] = field(default_factory=dict)  # None: from a secret or fieldRef
    entrypoint_replaced: bool = False
    spec: dict[str, Any] = field(default_factory=dict)  # the compose service or k8s container
    kind: str = "compose"  # or the k8s kind: Deployment, DaemonSet, Job
    init: bool = False  # a k8s init container

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""

    def __str__(self) -> str:
        return self.origin


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def settings_class(command: str) -> type[BusSettings] | None:
    """The settings class of ``command``, or None when its module is not in this checkout."""
    module, _, name = SETTINGS_OF_COMMAND[command].partition(":")
    try:
        found: type[BusSettings] = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return None
    return found


def example_value(value: str) -> str:
    """``${X:-default}`` -> default (or an example when empty); ``${X:?msg}`` -> an example."""

    def one(m: re.Match[str]) -> str:
        default = m.group(2) if m.group(0).find(":-") > 0 else None
        return default if default else _EXAMPLES.get(m.group(1), _EXAMPLE)

    return _COMPOSE_VAR.sub(one, value)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_workloads() -> list[Workload]:
    out = []
    for name, svc in compose()["services"].items():
        if "build" not in svc:
            continue
        env = {k: example_value(str(v)) for k, v in (svc.get("environment") or {}).items()}
        out.append(Workload(f"compose:{name}", [str(a) for a in svc.get("command") or []],
                            env, "entrypoint" in svc, svc))
    return out


def compose_others() -> dict[str, dict[str, Any]]:
    """The compose services that do not run the gpufleet image (Kafka, ClickHouse, Grafana)."""
    return {n: s for n, s in compose()["services"].items() if "build" not in s}


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in k8s_files() for d in yaml_docs(p)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def configmap(name: str) -> dict[str, str]:
    data: dict[str, str] = k8s_object("ConfigMap", name)["data"]
    return data


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def k8s_workloads() -> list[Workload]:
    out = []
    for path, obj in k8s_objects():
        if obj["kind"] not in K8S_KINDS:
            continue
        spec = pod_spec(obj)
        inits = spec.get("initContainers", [])
        for c in [*inits, *spec["containers"]]:
            if c["image"] != IMAGE:
                continue
            env: dict[str, str | None] = {}
            for ref in c.get("envFrom", []):
                env.update(configmap(ref["configMapRef"]["name"]))
            for e in c.get("env", []):
                env[e["name"]] = e.get("value")
            origin = (f"k8s:{path.relative_to(K8S)}:{obj['kind']}/{obj['metadata']['name']}"
                      f":{c['name']}")
            out.append(Workload(origin, [str(a) for a in c.get("args", [])], env,
                                "command" in c, c, obj["kind"], c in inits))
    return out


def gpufleet_workloads() -> list[Workload]:
    return compose_workloads() + k8s_workloads()


def migration_objects() -> dict[str, str]:
    """Every table and view the migrations create: name -> kind (TABLE, VIEW, ...)."""
    made = re.compile(r"CREATE\s+(TABLE|VIEW|MATERIALIZED\s+VIEW)\s+IF\s+NOT\s+EXISTS\s+(\w+)",
                      re.IGNORECASE)
    out: dict[str, str] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        for kind, name in made.findall(path.read_text()):
            out[name] = " ".join(kind.upper().split())
    return out
