from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_text
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus
from prometheus_client.samples import Sample

from gpufleet.ops import Metrics, add_ops_routes

ROOT = Path(__file__).resolve().parents[2]
OPENMETRICS = "application/openmetrics-text"


def test_render_counters_gauges_and_histograms() -> None:
    m = Metrics()
    m.inc("messages_in_total", 3, help="messages read", topic="a")
    m.inc("messages_in_total", topic="a")
    m.set("consumer_lag", 7, topic='we"ird')
    m.observe("decision_seconds", 0.003)
    m.observe("decision_seconds", 20)
    text = m.render()
    assert "# TYPE gpufleet_messages_in_total counter" in text
    assert 'gpufleet_messages_in_total{topic="a"} 4.0' in text
    assert 'gpufleet_consumer_lag{topic="we\\"ird"} 7.0' in text
    assert 'gpufleet_decision_seconds_bucket{le="0.005"} 1.0' in text
    assert 'gpufleet_decision_seconds_bucket{le="+Inf"} 2.0' in text
    assert "gpufleet_decision_seconds_count 2.0" in text
    assert "process_cpu_seconds_total " in text  # the process's own, as every client has


@pytest.mark.parametrize(
    ("record", "name", "labels", "expected"),
    [
        (lambda m: m.inc("a_total", 2, topic="t"), "a_total", {"topic": "t"}, 2.0),
        (lambda m: m.inc("a_total", 2, topic="t"), "a_total", {"topic": "u"}, 0.0),
        (lambda m: m.set("g", 1.5), "g", {}, 1.5),
        (lambda m: (m.set("g", 1.5), m.set("g", -3)), "g", {}, -3.0),
        (lambda m: (m.observe("h_seconds", 1), m.observe("h_seconds", 9)), "h_seconds", {}, 2.0),
        (lambda m: None, "never_total", {}, 0.0),
    ],
)
def test_value_reads_back_what_was_recorded(
    record: Callable[[Metrics], Any], name: str, labels: dict[str, str], expected: float
) -> None:
    m = Metrics(process=False)
    record(m)
    assert m.value(name, **labels) == expected


@pytest.mark.parametrize(
    ("first", "then", "complaint"),
    [
        (lambda m: m.inc("x_total"), lambda m: m.set("x_total", 1), "is a counter, not a gauge"),
        (lambda m: m.inc("x_total", a="1"), lambda m: m.inc("x_total", b="1"),
         "has labels ['a'], not ['b']"),
        (lambda m: m.set("x", 1), lambda m: m.inc("x_total"), "gpufleet_x_total (counter)"),
        (lambda m: m.inc("x_total"), lambda m: m.set("x_created", 1), "gpufleet_x_created"),
        (lambda m: m.set("x_bucket", 1), lambda m: m.observe("x", 1), "gpufleet_x (histogram)"),
    ],
)
def test_clashing_names_and_labels_are_refused_naming_the_metric(
    first: Callable[[Metrics], Any], then: Callable[[Metrics], Any], complaint: str
) -> None:
    m = Metrics(process=False)
    first(m)
    with pytest.raises(ValueError, match=re.escape(complaint)):
        then(m)


def test_each_service_has_a_registry_of_its_own() -> None:
    a, b = Metrics(), Metrics()
    a.inc("x_total")
    b.set("x_total", 1)  # another service's registry: no clash
    assert (a.value("x_total"), "gpufleet_x_total" in b.render()) == (1.0, True)


async def test_ops_routes() -> None:
    m = Metrics()
    m.inc("x_total")
    healthy = {"kafka": True, "warehouse": False}

    async def ready() -> dict[str, bool]:
        return healthy

    app = web.Application()
    add_ops_routes(app, m, ready)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        r = await client.get("/readyz")
        assert r.status == 503
        assert (await r.json())["checks"] == healthy
        healthy["warehouse"] = True
        assert (await client.get("/readyz")).status == 200
        plain = await client.get("/metrics")
        assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await plain.text()
        assert _samples(parse_prometheus(text))["gpufleet_x_total"] == 1.0
        asked = await client.get("/metrics", headers={"Accept": f"{OPENMETRICS}; version=1.0.0"})
        assert asked.headers["Content-Type"].startswith(OPENMETRICS)
        text = await asked.text()
        assert text.endswith("# EOF\n")
        assert _samples(parse_openmetrics(text))["gpufleet_x_total"] == 1.0


def _samples(families: Iterable[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in families:
        sample: Sample
        for sample in family.samples:
            out[sample.name] = sample.value
    return out


# -- every metric the services record, in both formats --------------------------------------

KINDS = {"inc": "counter", "set": "gauge", "observe": "histogram"}


def recorded_metrics() -> dict[str, set[tuple[str, str, tuple[str, ...]]]]:
    """Each service's metric calls, read from its source: {service: {(call, name, labels)}}."""
    found: dict[str, set[tuple[str, str, tuple[str, ...]]]] = {}
    for path in sorted((ROOT / "services").rglob("*.py")):
        service = path.relative_to(ROOT / "services").parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in KINDS and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                    and node.args[0].value.startswith(f"{service}_")):
                continue
            labels = tuple(sorted(k.arg for k in node.keywords if k.arg and k.arg != "help"))
            found.setdefault(service, set()).add((node.func.attr, node.args[0].value, labels))
    return found


RECORDED = recorded_metrics()


def test_the_scan_finds_the_services_metrics() -> None:
    assert {"api", "ingest", "scheduler", "telemetry", "warehouse"} <= set(RECORDED)
    assert ("inc", "warehouse_errors_total", ("code",)) in RECORDED["warehouse"]


def _record(m: Metrics, calls: Iterable[tuple[str, str, tuple[str, ...]]]) -> None:
    for call, name, labels in sorted(calls):
        values = {k: 'a "quoted"\\ value\n' for k in labels}
        getattr(m, call)(name, 0.25, help=f"what {name} counts", **values)


@pytest.mark.parametrize("service", [*sorted(RECORDED), "all in one process"])
def test_every_services_metrics_parse_as_prometheus_text_and_openmetrics(service: str) -> None:
    calls = RECORDED.get(service) or set().union(*RECORDED.values())
    m = Metrics()
    _record(m, calls)
    for text, parse in ((m.render(), parse_prometheus),
                        (openmetrics_text(m.registry).decode(), parse_openmetrics)):
        families = {f.name: f for f in parse(text)}
        for call, name, labels in calls:
            family = families.get(f"gpufleet_{name}".removesuffix("_total")) or families.get(
                f"gpufleet_{name}")
            assert family is not None, f"{name} missing"
            assert family.type == KINDS[call]
            values = [s for s in family.samples if not s.name.endswith("_created")]
            assert values and all(set(labels) <= set(s.labels) for s in values), name
            assert all(s.labels.get(k) == 'a "quoted"\\ value\n' for s in values for k in labels)
