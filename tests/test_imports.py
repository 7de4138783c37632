"""What the code may import: shared plumbing lives in ``gpufleet/``, so telemetry and the
executor do not import each other, and nothing reaches into aiokafka's private parts.

Both rules are checked on the source (parsed, not imported), first against a table of small
examples so that each check is seen to fail where it should.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("gpufleet", "services", "bench", "chaos")
APART = {"services.telemetry": "services.executor", "services.executor": "services.telemetry"}
# aiokafka's private client and internals. The outbox's ``_abort`` is the one place that
# reaches inside (aiokafka has no public call to end a producer without its batches); it is
# allowed there by name, and only there.
PRIVATE = {"_client", "_sender", "_closed", "_coordinator", "_fetcher", "_subscription",
           "_txn_manager", "_message_accumulator", "_metadata"}
ALLOWED = {("gpufleet/outbox.py", "_abort")}


def imported(tree: ast.AST, package: str) -> Iterator[str]:
    """Every module a file imports (relative imports resolved against ``package``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, node.module] if node.module else up)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def forbidden_imports(source: str, module: str) -> list[str]:
    """What a module imports that the rules forbid (the other of telemetry and executor)."""
    package = (module.removesuffix(".__init__") if module.endswith(".__init__")
               else module.rpartition(".")[0])
    tree = ast.parse(source)
    for mine, other in APART.items():
        if module == mine or module.startswith(mine + "."):
            return sorted({m for m in imported(tree, package)
                           if m == other or m.startswith(other + ".")})
    return []


def private_uses(source: str, path: str) -> list[str]:
    """aiokafka's private names used by a file: imported (a module or name with a leading
    underscore) or read as an attribute (``consumer._client``, ``getattr(p, "_sender")``)."""
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiokafka"):
            parts = [*(node.module or "").split("."), *(a.name for a in node.names)]
            found += [f"import {p}" for p in parts if p.startswith("_") and p != "__version__"]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("aiokafka")
                      and any(p.startswith("_") for p in a.name.split("."))]
    for func, node in _attributes(tree):
        if (path, func) not in ALLOWED:
            found.append(f"{func or '<module>'}: .{node}")
    return found


def _attributes(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(enclosing function, name) of every private aiokafka attribute read on an object other
    than ``self`` or ``cls`` (our own classes may name their fields as they like)."""
    def walk(node: ast.AST, func: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) \
                else func
            if isinstance(child, ast.Attribute) and child.attr in PRIVATE and not (
                    isinstance(child.value, ast.Name) and child.value.id in ("self", "cls")):
                yield func, child.attr
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Name)
                    and child.func.id in ("getattr", "setattr", "hasattr")
                    and len(child.args) > 1 and isinstance(child.args[1], ast.Constant)
                    and child.args[1].value in PRIVATE):
                yield func, str(child.args[1].value)
            yield from walk(child, name)
    yield from walk(tree, "")


def sources() -> list[tuple[str, str]]:
    out = []
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            out.append((str(path.relative_to(ROOT)), path.read_text()))
    return out


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("services.telemetry.node", "from services.executor.state import file_load\n",
     ["services.executor.state", "services.executor.state.file_load"]),
    ("services.executor.driver", "import services.telemetry.driver\n",
     ["services.telemetry.driver"]),
    ("services.executor.driver", "from services import telemetry\n", ["services.telemetry"]),
    ("services.executor.driver", "from ..telemetry import publisher\n",
     ["services.telemetry", "services.telemetry.publisher"]),
    ("services.executor.driver", "from gpufleet.outbox import Outbox\n", []),
    ("services.telemetry.__init__", "from ..executor import state\n",
     ["services.executor", "services.executor.state"]),
    ("services.fleet.driver", "from services.telemetry.driver import tick_loop\n", []),
])
def test_the_import_check_finds_what_it_should(module: str, source: str,
                                               expected: list[str]) -> None:
    assert forbidden_imports(source, module) == expected


@pytest.mark.parametrize(("path", "source", "expected"), [
    ("services/api/live.py", "async def f(c):\n    await c._client.fetch_all_metadata()\n",
     ["f: ._client"]),
    ("services/x.py", "def f(p):\n    return getattr(p, '_sender', None)\n", ["f: ._sender"]),
    ("services/x.py", "from aiokafka.conn import _address_family\n",
     ["import _address_family"]),
    ("services/x.py", "import aiokafka._internal\n", ["import aiokafka._internal"]),
    ("services/x.py", "class A:\n    def f(self):\n        return self._client\n", []),
    ("services/x.py", "async def f(c):\n    return c.partitions_for_topic('t')\n", []),
    ("gpufleet/outbox.py", "async def _abort(p):\n    await p._sender.close()\n", []),
    ("gpufleet/outbox.py", "async def other(p):\n    await p._sender.close()\n",
     ["other: ._sender"]),
])
def test_the_private_check_finds_what_it_should(path: str, source: str,
                                                expected: list[str]) -> None:
    assert private_uses(source, path) == expected


def test_telemetry_and_the_executor_do_not_import_each_other() -> None:
    found = {path: bad for path, text in sources()
             if (bad := forbidden_imports(text, module_of(path)))}
    assert found == {}


def test_nothing_uses_a_private_part_of_aiokafka() -> None:
    found = {path: bad for path, text in sources() if (bad := private_uses(text, path))}
    assert found == {}


def test_the_checks_read_the_services() -> None:
    """The tree walk finds the services (a check over no files would pass for nothing)."""
    names = {module_of(path) for path, _ in sources()}
    assert {"services.telemetry.driver", "services.executor.driver", "gpufleet.outbox"} <= names


def test_one_style_of_clickhouse_client() -> None:
    """The services reach the warehouse through ``gpufleet.clickhouse`` (the synchronous
    client in a thread), never through clickhouse-connect's async twin."""
    found = [path for path, text in sources() if "get_async_client" in text]
    assert found == []
    # (the benchmarks and the fault suite are the warehouse's users: they bring their clients)
    own = [path for path, text in sources() if path.startswith(("services/", "gpufleet/"))
           and "get_client" in text and path != "gpufleet/clickhouse.py"]
    assert own == [], "build clients with gpufleet.clickhouse.client"
