"""JSON Schemas of the topic contracts, checked in under ``deploy/schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from gpufleet.contracts import SCHEMA_VERSION, TOPICS, TopicSpec, message_type

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "deploy" / "schemas"


def schema_of(spec: TopicSpec) -> dict[str, Any]:
    schema = msgspec.json.schema(message_type(spec))
    schema["$id"] = f"gpufleet/{spec.name}.json"
    schema["title"] = f"gpufleet.{spec.name}"
    schema["description"] = f"{spec.doc} (schema version {SCHEMA_VERSION}; key: {spec.key})"
    return schema


def rendered() -> dict[str, str]:
    """File name -> the JSON text that should be checked in."""
    return {
        f"{spec.name}.json": json.dumps(schema_of(spec), indent=2, sort_keys=True) + "\n"
        for spec in TOPICS
    }


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (directory / name).write_text(text)
    return sorted(rendered())


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """The schema files that differ from the code (missing, changed or left over)."""
    want = rendered()
    have = {p.name: p.read_text() for p in directory.glob("*.json")} if directory.exists() else {}
    return sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
