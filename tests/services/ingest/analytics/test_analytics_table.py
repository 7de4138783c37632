"""The typed table over a faust table: what this process wrote is read back, even when the
table's standby echoes an older changelog record for a moment."""

from __future__ import annotations

import msgspec

from services.ingest.analytics.app import StructTable
from services.ingest.analytics.core import NodeGpus


def test_newest_write_wins_over_a_late_echo_and_deletes_stick() -> None:
    raw: dict[bytes, bytes] = {b"recovered": msgspec.json.encode(NodeGpus(gpus=[7]))}
    t = StructTable(raw, NodeGpus)
    assert t["recovered"].gpus == [7]  # state recovery put in the table
    t["n"] = NodeGpus(gpus=[1])
    t["n"] = NodeGpus(gpus=[1, 2])
    raw[b"n"] = msgspec.json.encode(NodeGpus(gpus=[1]))  # the standby applies the older record
    assert t["n"].gpus == [1, 2]
    assert sorted(t) == ["n", "recovered"] and len(t) == 2
    del t["n"]
    raw[b"n"] = msgspec.json.encode(NodeGpus(gpus=[1, 2]))  # echo of a write before the delete
    assert "n" not in t and t.get("n") is None and list(t) == ["recovered"]
