"""What a statement may reach, judged on the engine's own parse of it (``EXPLAIN AST``).

The endpoint does not guess from SQL text: the engine parses the statement and prints its
syntax tree, and this module reads that tree. Nobody may write or read the host's files
through the endpoint (``INTO OUTFILE``, ``FROM INFILE``: ClickHouse's server refuses them over
HTTP too); table functions, engines and dictionary sources that reach outside the warehouse are
refused; the writer's ``file()`` and ``File`` engine are confined to the warehouse's
``user_files`` folder (relative paths, never ``..``); the analyst may touch no file at all and
no dictionary. Pure functions: the tree's text in, a refusal (an error value) or None out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.warehouse.errors import ACCESS_DENIED, INTO_OUTFILE_NOT_ALLOWED, ClickHouseError

# Table functions that only compute or read the warehouse's own tables. Every other table
# function the engine knows (file, url, s3, executable, remote, mysql, python, ...) reaches
# outside and is refused; the writer may also use ``file`` inside user_files.
SAFE_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "values", "null", "generaterandom",
    "generateseries", "generate_series", "primes", "view", "viewifpermitted", "viewexplain",
    "merge", "input", "format", "loop", "mergetreeindex", "mergetreeprojection",
})
# Engines that keep their data in the warehouse; every other engine (File with a path, URL,
# S3, Executable, Kafka, MySQL, Dictionary, Distributed, FileLog, ...) is refused.
SAFE_ENGINES = frozenset({
    "mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree",
    "collapsingmergetree", "versionedcollapsingmergetree", "graphitemergetree",
    "coalescingmergetree", "memory", "log", "tinylog", "stripelog", "null", "set", "join",
    "buffer", "merge", "view", "materializedview", "generaterandom", "alias",
})
FILE_FUNCTIONS = frozenset({"file"})
# Dictionary sources that read files, run programs or call other hosts.
DICTIONARY_SOURCES = frozenset({
    "file", "executable", "executable_pool", "http", "https", "mysql", "postgresql",
    "mongodb", "redis", "odbc", "jdbc", "cassandra", "yamlregexptree",
})
# Formats that read schema or template files named by a setting.
FILE_FORMATS = frozenset({
    "template", "templateignorespaces", "protobuf", "protobufsingle", "protobuflist", "capnproto",
})
FILE_SETTINGS = frozenset({
    "format_schema", "output_format_schema", "format_template_resultset",
    "format_template_row", "format_template_rows_between_delimiter",
    "schema_inference_hints_file",
})
_STATEMENT_ROOTS = frozenset({"SelectWithUnionQuery", "InsertQuery", "Explain"})
_LINE = re.compile(r"^( *)(\S+)(?: +(\S+))?")
_STRING = re.compile(r"^Literal \\'(.*)\\'(?: \(alias [^)]*\))?$")


@dataclass
class Node:
    kind: str  # "Function", "Literal", "Identifier", "Storage definition", ...
    name: str  # the function's name, the literal's text, ...
    text: str  # the whole line, without indentation
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    """What a user may reach. ``known_table_functions``/``known_engines``: the engine's lists
    (lower case), so that a new outside-reaching function is refused by default."""

    files: bool  # may use file() / File inside user_files
    dictionaries: bool
    known_table_functions: frozenset[str]
    known_engines: frozenset[str]


def parse_tree(text: str) -> Node:
    """The ``EXPLAIN AST`` output as a tree (one space of indentation per level)."""
    root = Node("", "", "")
    stack: list[tuple[int, Node]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        body = line.strip()
        kind, name = _kind_and_name(body)
        node = Node(kind, name, body)
        while stack[-1][0] >= depth:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((depth, node))
    return root.children[0] if len(root.children) == 1 else root


def _kind_and_name(body: str) -> tuple[str, str]:
    for kind in ("Storage definition", "Dictionary definition", "Columns definition"):
        if body.startswith(kind):
            return kind, ""
    m = _LINE.match(body)
    assert m is not None
    name = m.group(3) or ""
    return m.group(2), "" if name.startswith("(") else name


def _walk(node: Node, in_storage: bool = False) -> Iterator[tuple[Node, bool]]:
    yield node, in_storage
    for child in node.children:
        yield from _walk(child, in_storage or node.kind == "Storage definition")


def check(tree: Node, policy: Policy, user: str) -> ClickHouseError | None:
    """A refusal for the first thing ``tree`` reaches that ``policy`` forbids, else None."""
    for node, _ in _walk(tree):
        if node.kind in _STATEMENT_ROOTS and any(c.kind == "Literal" for c in node.children):
            if node.kind == "InsertQuery":
                return _denied(user, "FROM INFILE reads the server's files: send the data in "
                                     "the request body instead")
            return ClickHouseError(INTO_OUTFILE_NOT_ALLOWED,
                                   "DB::Exception: INTO OUTFILE is not allowed over HTTP: the "
                                   "result comes back in the response body")
    for node, in_storage in _walk(tree):
        refusal = _check_node(node, in_storage, policy, user)
        if refusal is not None:
            return refusal
    return None


def _check_node(node: Node, in_storage: bool, policy: Policy,
                user: str) -> ClickHouseError | None:
    name = node.name.lower()
    if node.kind == "Identifier" and name in FILE_FORMATS:
        return _denied(user, f"format {node.name} reads schema files from the server")
    if node.kind == "FunctionWithKeyValueArguments" and name in DICTIONARY_SOURCES:
        return _denied(user, f"dictionary source {name.upper()} reaches outside the warehouse")
    if node.kind != "Function":
        return None
    if name.startswith("filesystem"):
        return _denied(user, f"{node.name}() reads the server's file system")
    if not policy.dictionaries and (name.startswith("dict") or name == "dictionary"):
        return _denied(user, f"{node.name}: dictionaries are not available to this user")
    if in_storage:
        if name in FILE_FUNCTIONS and policy.files:
            return _paths_ok(node, user, engine=True)
        if name in policy.known_engines and name not in SAFE_ENGINES:
            return _denied(user, f"table engine {node.name} reaches outside the warehouse")
        return None
    if name in FILE_FUNCTIONS and policy.files:
        return _paths_ok(node, user, engine=False)
    if name in policy.known_table_functions and name not in SAFE_TABLE_FUNCTIONS:
        return _denied(user, f"{node.name}() reaches outside the warehouse")
    return None


def _paths_ok(node: Node, user: str, *, engine: bool) -> ClickHouseError | None:
    """file('rel/path', ...) or ENGINE = File(Format[, 'rel/path']): inside user_files only."""
    args = node.children[0].children if node.children else []
    if not engine and (not args or _STRING.match(args[0].text) is None):
        return _denied(user, "file() takes its path as a string literal, relative to the "
                             "warehouse's user_files folder")
    for arg in args:
        m = _STRING.match(arg.text)
        if m is not None and not safe_path(m.group(1)):
            return ClickHouseError(291, f"DB::Exception: File path {m.group(1)} is not inside "
                                        "the warehouse's user_files folder (use a relative "
                                        "path without '..')")  # DATABASE_ACCESS_DENIED
    return None


def safe_path(path: str) -> bool:
    """A path that stays inside the folder it is relative to."""
    if not path or path.startswith(("/", "~")) or "\\" in path:
        return False
    return ".." not in path


def _denied(user: str, what: str) -> ClickHouseError:
    return ClickHouseError(ACCESS_DENIED, f"DB::Exception: {user}: Not enough privileges: {what}")
