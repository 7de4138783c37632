from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gpufleet.ops import Metrics, add_ops_routes


def test_render_counters_gauges_and_histograms() -> None:
    m = Metrics()
    m.inc("messages_in_total", 3, help="messages read", topic="a")
    m.inc("messages_in_total", topic="a")
    m.set("consumer_lag", 7, topic='we"ird')
    m.observe("decision_seconds", 0.003)
    m.observe("decision_seconds", 20)
    text = m.render()
    assert '# TYPE gpufleet_messages_in_total counter' in text
    assert 'gpufleet_messages_in_total{topic="a"} 4' in text
    assert 'gpufleet_consumer_lag{topic="we\\"ird"} 7' in text
    assert 'gpufleet_decision_seconds_bucket{le="0.005"} 1' in text
    assert 'gpufleet_decision_seconds_bucket{le="+Inf"} 2' in text
    assert "gpufleet_decision_seconds_count 2" in text
    assert m.value("messages_in_total", topic="a") == 4


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
        assert "gpufleet_x_total 1" in await (await client.get("/metrics")).text()
