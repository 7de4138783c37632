"""The compose file and the Kubernetes manifests agree with the code they run.

Nothing here starts Docker or Kubernetes: the files are read and checked against the settings
classes, the command table and each other.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_model import (
    DEPLOY,
    K8S,
    Workload,
    compose,
    compose_others,
    compose_workloads,
    configmap,
    gpufleet_workloads,
    k8s_object,
    k8s_workloads,
    pod_spec,
    settings_class,
    yaml_docs,
    yaml_files,
)

from gpufleet.cli import COMMANDS
from gpufleet.config import BusSettings, ConfigError, env_name, load

WORKLOADS = gpufleet_workloads()
RUNNERS = [w for w in WORKLOADS if not w.entrypoint_replaced]
SERVICES = [w for w in k8s_workloads() if w.kind in ("Deployment", "DaemonSet") and not w.init]


def _ids(items: list[Any]) -> list[str]:
    return [str(i) for i in items]


def _settings_of(w: Workload) -> type[BusSettings]:
    cls = settings_class(w.command)
    assert cls is not None, f"{w}: no settings class for `gpufleet {w.command}`"
    return cls


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(K8S.parent)))
def test_yaml_parses(path: Path) -> None:
    assert yaml_docs(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("w", RUNNERS, ids=_ids(RUNNERS))
def test_command_exists_and_its_arguments_parse(w: Workload) -> None:
    assert w.command in COMMANDS, f"{w}: `gpufleet {w.command}` is no command"
    module = importlib.import_module(COMMANDS[w.command][0])
    parser = argparse.ArgumentParser(prog=f"gpufleet {w.command}", exit_on_error=False)
    module.add_arguments(parser)
    parser.parse_args(w.argv[1:])


@pytest.mark.parametrize("w", RUNNERS, ids=_ids(RUNNERS))
def test_every_gpufleet_variable_is_a_setting_of_that_service(w: Workload) -> None:
    known = {env_name(f) for f in _settings_of(w).__struct_fields__}
    unknown = sorted(n for n in w.env if n.startswith("GPUFLEET_") and n not in known)
    assert not unknown, f"{w}: not settings of `gpufleet {w.command}`: {unknown}"


@pytest.mark.parametrize("w", RUNNERS, ids=_ids(RUNNERS))
def test_the_settings_load_from_the_given_values(w: Workload) -> None:
    cls = _settings_of(w)
    env = {k: ("node-1" if v is None else v) for k, v in w.env.items() if k.startswith("GPUFLEET_")}
    try:
        load(cls, env)
    except ConfigError as e:
        pytest.fail(f"{w}: {e}")


@pytest.mark.parametrize("name", sorted(compose_others()), ids=str)
def test_no_gpufleet_variables_outside_gpufleet_containers(name: str) -> None:
    env = compose_others()[name].get("environment") or {}
    assert not [k for k in env if k.startswith("GPUFLEET_")]


def test_the_shared_configmap_holds_only_bus_settings() -> None:
    # Every pod takes it whole: a service's own setting (GPUFLEET_OPS_PORT is 9102 to the
    # scheduler, 9104 to ingest) would reach every other service too.
    bus = {env_name(f) for f in BusSettings.__struct_fields__}
    assert set(configmap("gpufleet-bus")) <= bus


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_the_scheduler_and_the_api_get_one_quota_value(where: str) -> None:
    quotas = {w.command: w.env.get("GPUFLEET_TENANT_QUOTAS") for w in RUNNERS
              if w.origin.startswith(where) and w.command in ("scheduler", "api")}
    assert set(quotas) == {"scheduler", "api"}, quotas
    assert quotas["scheduler"] is not None and quotas["scheduler"] == quotas["api"], quotas


def test_secret_keys_are_settings() -> None:
    bus = {env_name(f) for f in BusSettings.__struct_fields__}
    keys = set(k8s_object("Secret", "gpufleet-secrets")["stringData"])
    assert keys <= bus | {"GPUFLEET_API_TOKENS"}


def _port_of(w: Workload, cls: type[BusSettings], url_or_port: str) -> tuple[int, int]:
    """(the port a health check asks, the port the service listens on by its settings)."""
    asked = int(re.findall(r"(\d+)(?:/readyz)?$", url_or_port.rstrip("'\"); "))[-1])
    env = {k: v for k, v in w.env.items() if k.startswith("GPUFLEET_") and v is not None}
    settings = load(cls, env)
    ports = [getattr(settings, f) for f in cls.__struct_fields__
             if f.endswith("port") and f != "warehouse_port"]
    assert len(ports) == 1, f"{w}: which port? {ports}"
    return asked, int(ports[0])


NO_OPS = {"demo-workload"}  # a client that submits jobs: it serves nothing
COMPOSE_SERVICES = [w for w in compose_workloads()
                    if w.spec.get("restart") != "no" and w.command not in NO_OPS]


@pytest.mark.parametrize("w", COMPOSE_SERVICES, ids=_ids(COMPOSE_SERVICES))
def test_compose_service_has_restart_and_a_readiness_check_on_its_own_port(w: Workload) -> None:
    assert w.spec["restart"] in ("unless-stopped", "always", "on-failure")
    test = " ".join(w.spec["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:\d+/readyz", test)
    assert url, f"{w}: the health check asks no /readyz: {test}"
    asked, listens = _port_of(w, _settings_of(w), url.group(0))
    assert asked == listens


@pytest.mark.parametrize("name", sorted(compose()["services"]), ids=str)
def test_compose_dependencies_exist(name: str) -> None:
    services = compose()["services"]
    for dep, cond in (services[name].get("depends_on") or {}).items():
        assert dep in services, f"{name} depends on {dep}, which is no service"
        assert cond["condition"] in ("service_healthy", "service_completed_successfully")
        if cond["condition"] == "service_healthy":
            assert "healthcheck" in services[dep], f"{dep} has no health check to wait for"


@pytest.mark.parametrize("name", ["telemetry", "executor"], ids=str)
def test_compose_gpu_services_use_the_nvidia_runtime_and_the_host_name(name: str) -> None:
    svc = compose()["services"][name]
    assert svc["profiles"] == ["gpu"] and svc["runtime"] == "nvidia" and svc["pid"] == "host"
    assert "NODE_NAME" in svc["environment"]["GPUFLEET_NODE"]


@pytest.mark.parametrize("w", SERVICES, ids=_ids(SERVICES))
def test_k8s_container_has_probes_on_its_ops_port_and_resource_limits(w: Workload) -> None:
    c = w.spec
    for probe, route in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"]["path"] == route, f"{c['name']}: {probe}"
    port = c["readinessProbe"]["httpGet"]["port"]
    declared = {p.get("name"): p["containerPort"] for p in c["ports"]}
    number = declared.get(port, port)
    assert number in declared.values(), f"{c['name']}: probe port {port} is not declared"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']}: {kind}"
    asked, listens = _port_of(w, _settings_of(w), str(number))
    assert asked == listens, f"{w}: probes port {asked}, the service listens on {listens}"


def test_scheduler_is_one_replica_replaced_not_rolled() -> None:
    d = k8s_object("Deployment", "scheduler")
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    assert "deploy" not in compose()["services"]["scheduler"]


def test_gpu_daemonset_runs_on_gpu_nodes_with_host_pids_and_the_node_name() -> None:
    spec = pod_spec(k8s_object("DaemonSet", "gpu-node"))
    assert any(k.startswith("nvidia.com/gpu") for k in spec["nodeSelector"])
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec["hostPID"] is True and spec["runtimeClassName"] == "nvidia"
    for c in spec["containers"]:
        node = next(e for e in c["env"] if e["name"] == "GPUFLEET_NODE")
        assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", c["name"]


KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(K8S)))
def test_kustomization_lists_every_manifest_and_only_existing_ones(path: Path) -> None:
    k = yaml_docs(path)[0]
    listed = [*k.get("resources", []), *k.get("components", [])]
    for ref in listed:
        assert (path.parent / ref).exists(), f"{path}: {ref} does not exist"
    files = {p.name for p in path.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert files == {r for r in listed if not r.startswith("..")}


def test_the_simulated_fleet_is_a_component() -> None:
    k = yaml_docs(K8S / "components" / "simulated-fleet" / "kustomization.yaml")[0]
    assert k["kind"] == "Component"


@pytest.mark.parametrize("path", sorted((K8S / "overlays").glob("*/kustomization.yaml")),
                         ids=lambda p: p.parent.name)
def test_overlay_puts_everything_in_the_base_namespace(path: Path) -> None:
    # A component's objects are added at the overlay: the base's namespace does not reach them.
    base = yaml_docs(K8S / "base" / "kustomization.yaml")[0]
    assert yaml_docs(path)[0]["namespace"] == base["namespace"]


API = [w for w in gpufleet_workloads() if w.command == "api"]


def _env_example() -> dict[str, str]:
    lines = (DEPLOY / "env.example").read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if "=" in ln and not ln.startswith("#"))


@pytest.mark.parametrize("w", API, ids=_ids(API))
def test_an_api_beyond_loopback_is_given_tokens(w: Workload) -> None:
    # Without tokens every caller is an admin: the api refuses to listen beyond loopback.
    from services.api.auth import bind_refusal, is_loopback, parse_tokens
    from services.api.config import ApiSettings

    host = str(w.env.get("GPUFLEET_API_HOST") or ApiSettings().api_host)
    if is_loopback(host):
        return
    if w.kind == "compose":
        raw = str(w.spec["environment"].get("GPUFLEET_API_TOKENS", ""))
        required = re.fullmatch(r"\$\{(\w+):\?[^}]+\}", raw)
        assert required, f"{w}: GPUFLEET_API_TOKENS must be a required variable: {raw!r}"
        tokens = _env_example().get(required.group(1), "")
    else:
        entry = next((e for e in w.spec.get("env", []) if e["name"] == "GPUFLEET_API_TOKENS"),
                     None)
        assert entry is not None, f"{w}: no GPUFLEET_API_TOKENS"
        ref = entry["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional"), f"{w}: the tokens' secret must not be optional"
        tokens = k8s_object("Secret", ref["name"])["stringData"][ref["key"]]
    assert bind_refusal(host, parse_tokens(tokens)) is None, f"{w}: no tokens for {host}"
