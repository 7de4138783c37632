"""The example queries of the warehouse docs run on the real engine (against the tables and
views the migrations make), so the docs cannot drift from the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "warehouse.md"


def example_statements() -> list[str]:
    text = DOC.read_text().split("**Example queries.**", 1)[1]
    sql = text.split("```sql", 1)[1].split("```", 1)[0]
    return [s.strip() for s in sql.split(";") if s.strip()]


def test_there_are_examples_of_each_loop_view() -> None:
    statements = example_statements()
    for view in ("v_reclaims", "v_job_rightsizing", "v_gpu_drains", "gpu_util_1h"):
        assert any(view in s for s in statements), view


@pytest.mark.parametrize("statement", example_statements(),
                         ids=lambda s: s.splitlines()[0][3:40])
def test_example_query_runs(writer: Any, statement: str) -> None:
    writer.query(statement)
