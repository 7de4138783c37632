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


def test_own_writes_are_kept_only_while_an_echo_may_still_come() -> None:
    now = [0.0]
    raw: dict[bytes, bytes] = {}
    t = StructTable(raw, NodeGpus, keep_s=600.0, clock=lambda: now[0])
    t["old"] = NodeGpus(gpus=[1])
    t["gone"] = NodeGpus(gpus=[2])
    del t["gone"]
    now[0] = 300.0
    t["new"] = NodeGpus(gpus=[3])
    assert list(t._written) == [b"old", b"gone", b"new"]
    for i in range(1000):  # ten minutes on: a thousand jobs come and go
        now[0] = 601.0 + i
        t[f"job-{i}"] = NodeGpus(gpus=[i])
        del t[f"job-{i}"]
    assert len(t._written) == 601  # what was written in the last ten minutes, no more
    assert b"old" not in t._written and b"gone" not in t._written
    assert t["old"].gpus == [1] and "gone" not in t  # read from the table itself
    assert sorted(t) == ["new", "old"]
    # An echo later than that shows what the table holds, until the newest write's echo.
    raw[b"new"] = msgspec.json.encode(NodeGpus(gpus=[9]))
    assert t["new"].gpus == [9]
