from __future__ import annotations

import json
from pathlib import Path

from gpufleet import schemas


def test_checked_in_schemas_match_the_code() -> None:
    assert schemas.drift() == [], "run `gpufleet schemas write` and commit deploy/schemas/"


def test_drift_is_seen(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.drift(tmp_path) == []
    path = tmp_path / "jobs.events.json"
    doc = json.loads(path.read_text())
    doc["$defs"]["JobEvent"]["properties"]["exit_code"] = {"type": "string"}
    path.write_text(json.dumps(doc))
    (tmp_path / "old.topic.json").write_text("{}")
    (tmp_path / "nodes.json").unlink()
    assert schemas.drift(tmp_path) == ["jobs.events.json", "nodes.json", "old.topic.json"]
