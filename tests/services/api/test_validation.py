"""Bad input gets 400 with a JSON error naming the field; oversized bodies get 413."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import ADMIN, RunningApi, auth

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("body", "field"), [
    ({"gpus": "two"}, "gpus"),
    ({"gpus": 0}, "gpus"),
    ({"gpu_milli": 2000}, "gpu_milli"),
    ({"gpus": 2, "gpu_milli": 500}, "gpu_milli"),
    ({"job_id": "bad id!"}, "job_id"),
    ({"tenant": ""}, "tenant"),
    ({"surprise": 1}, "surprise"),
    ({"env": {"A": 1}}, "env"),
    ({"gpu_models": [""]}, "gpu_models[0]"),
    ({"sim_util": 101}, "sim_util"),
    ({"gpu_milli": 20.5}, "gpu_milli"),  # a fraction of a thousandth is no integer
    ({"gpus": "2"}, "gpus"),  # a number as text is not a number
    ({"gpus": True}, "gpus"),
    ({"gpus": 2.0, "gpu_milli": 500.0}, "gpu_milli"),  # the document's if/then says it too
    ([], None),
])
async def test_bad_submit_bodies(shared_api: RunningApi, body: Any, field: str | None) -> None:
    response = await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN), json=body)
    assert response.status == 400
    error = await response.json()
    assert error.get("field") == field, error


@pytest.mark.parametrize(("n", "body"), [
    # JSON Schema (and so the OpenAPI document) counts a number without a fraction as an integer
    (1, {"gpu_milli": 20.0}),
    (2, {"gpus": 2.0, "priority": -3.0, "est_runtime_s": 60}),
    (3, {"gpus": 1e0, "gpu_milli": 5e2}),
])
async def test_whole_numbers_written_as_floats_are_integers(shared_api: RunningApi, n: int,
                                                           body: dict[str, Any]) -> None:
    response = await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN),
                                            json={"job_id": f"whole-{n}", **body})
    assert response.status == 202, await response.text()
    spec = shared_api.state.jobs[f"whole-{n}"]
    assert (spec.gpus, spec.gpu_milli) == (int(body.get("gpus", 1)),
                                           int(body.get("gpu_milli", 1000)))


async def test_not_json_is_400(shared_api: RunningApi) -> None:
    response = await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN), data=b"{nope")
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/jobs", {"limit": "0"}, "limit"),
    ("/api/v1/jobs", {"state": "bogus"}, "state"),
    ("/api/v1/jobs", {"offset": "x"}, "offset"),
    ("/api/v1/jobs", {"colour": "red"}, "colour"),
    ("/api/v1/history/utilization", {"step": "1"}, "step"),
    ("/api/v1/history/utilization", {"from": "200", "to": "100"}, "from"),
    ("/api/v1/history/utilization", {"group_by": "planet"}, "group_by"),
    ("/api/v1/history/utilization", {"to": "0"}, "from"),  # found by the spec fuzzer
    ("/api/v1/history/utilization", {"from": "0", "to": "3000000000", "step": "60"}, "step"),
    ("/api/v1/stream", {"interval": "0"}, "interval"),
])
async def test_bad_query_parameters(shared_api: RunningApi, path: str, params: dict[str, str],
                                    field: str) -> None:
    response = await shared_api.get(path, **params)
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_oversized_body_is_413(shared_api: RunningApi) -> None:
    body = {"job_id": "big", "env": {f"K{i}": "x" * 100 for i in range(1000)}}
    response = await shared_api.client.post("/api/v1/jobs", headers=auth(ADMIN), json=body)
    assert response.status == 413
    assert "too large" in (await response.json())["error"]
