"""Hypothesis strategies for the wire form of every contract, read from the contract's types.

Each strategy draws the JSON value of a message as a producer could send it: fields left out
or given, each value random within its bounds or on a bound (the least, the most, the longest
string, the longest short list: one item repeated), and the union members with their tag.
What it draws must decode with the topic's decoder: strategies and contracts cannot drift.

(``hypothesis-jsonschema`` would draw from the checked-in JSON Schemas, but it does not run
with the Hypothesis this project uses; the schemas are generated from these same types.)
"""

from __future__ import annotations

import enum
import functools
from typing import Any

import msgspec.inspect as mi
from hypothesis import strategies as st

from gpufleet.contracts import TOPIC_BY_NAME, NodeState, message_type

NOW = 1_790_000_000.0  # the clock of the consumers under test (late 2026)
TIME_FIELDS = frozenset({"ts", "window_start", "since"})  # near NOW, mostly: not all too old
LONGEST_LIST = 64  # a list is drawn at its maximum length only up to this many items
SHORT = 3  # random lists and strings are this short, mostly


def _bounds(t: mi.IntType | mi.FloatType) -> tuple[Any, Any]:
    lo = t.ge if t.ge is not None else t.gt
    hi = t.le if t.le is not None else t.lt
    if lo is None or hi is None:
        raise ValueError(f"unbounded number in a contract: {t}")
    if isinstance(t, mi.IntType):
        return (lo + 1 if t.ge is None else lo), (hi - 1 if t.le is None else hi)
    return lo, hi


def _int(t: mi.IntType) -> st.SearchStrategy[int]:
    lo, hi = _bounds(t)
    edges = sorted({lo, hi, min(max(0, lo), hi), min(lo + 1, hi), max(hi - 1, lo)})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _float(t: mi.FloatType, name: str) -> st.SearchStrategy[float]:
    lo, hi = _bounds(t)
    edges = st.sampled_from(sorted({float(lo), float(hi), min(max(0.0, lo), hi)}))
    inner = st.floats(lo, hi, allow_nan=False, allow_infinity=False,
                      exclude_min=t.gt is not None, exclude_max=t.lt is not None)
    if name in TIME_FIELDS:
        near = st.floats(max(lo, NOW - 7200), min(hi, NOW + 5))
        return st.one_of(near, near, near, edges, inner)
    return st.one_of(edges, inner)


def _sized(t: mi.StrType | mi.BytesType | mi.ListType | mi.DictType) -> tuple[int, int]:
    lo = t.min_length or 0
    if t.max_length is None:
        raise ValueError(f"a string or list without a maximum size in a contract: {t}")
    return lo, t.max_length


def _str(t: mi.StrType) -> st.SearchStrategy[str]:
    lo, hi = _sized(t)
    return st.one_of(st.text(min_size=lo, max_size=min(hi, max(lo, SHORT))),
                     st.just("x" * hi), st.just("é" * hi), st.just("x" * lo))


def _bytes(t: mi.BytesType) -> st.SearchStrategy[bytes]:
    lo, hi = _sized(t)
    return st.binary(min_size=lo, max_size=min(hi, max(lo, 64)))


def _list(t: mi.ListType, name: str) -> st.SearchStrategy[list[Any]]:
    lo, hi = _sized(t)
    item = strategy(t.item_type, name)
    out = st.lists(item, min_size=lo, max_size=min(hi, max(lo, SHORT)))
    if hi <= LONGEST_LIST:  # at its longest: one item drawn, repeated (cheap to draw)
        out = st.one_of(out, item.map(lambda x: [x] * hi))
    return out


def _dict(t: mi.DictType, name: str) -> st.SearchStrategy[dict[Any, Any]]:
    lo, hi = _sized(t)
    return st.dictionaries(strategy(t.key_type, name), strategy(t.value_type, name),
                           min_size=lo, max_size=min(hi, max(lo, SHORT)))


def _node_state(t: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
    """A NodeState has one free share and one health flag per GPU: drawn as the count first."""
    types = {f.name: f.type for f in t.fields}
    milli = types["free_milli"]
    assert isinstance(milli, mi.Metadata | mi.ListType)
    item = strategy(milli.type.item_type if isinstance(milli, mi.Metadata) else milli.item_type)

    def build(n: int) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({
            "node": strategy(types["node"]), "model": strategy(types["model"]),
            "gpus": st.just(n), "free_milli": st.lists(item, min_size=n, max_size=n),
            "healthy": st.lists(st.booleans(), min_size=n, max_size=n)})

    return strategy(types["gpus"]).flatmap(build)


def _struct(t: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
    if t.cls is NodeState:
        return _node_state(t)
    fixed: dict[str, Any] = {}
    if t.tag_field is not None:
        fixed[t.tag_field] = t.tag
    required = {f.encode_name: strategy(f.type, f.name) for f in t.fields if f.required}
    optional = {f.encode_name: strategy(f.type, f.name) for f in t.fields if not f.required}
    return st.fixed_dictionaries({**{k: st.just(v) for k, v in fixed.items()}, **required},
                                 optional=optional)


def strategy(t: mi.Type, name: str = "") -> st.SearchStrategy[Any]:
    """Wire values of one contract type (``name``: the field it is drawn for)."""
    match t:
        case mi.IntType():
            return _int(t)
        case mi.FloatType():
            return _float(t, name)
        case mi.StrType():
            return _str(t)
        case mi.BytesType():
            return _bytes(t)
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.ListType():
            return _list(t, name)
        case mi.DictType():
            return _dict(t, name)
        case mi.StructType():
            return _struct(t)
        case mi.UnionType():
            return st.one_of(*(strategy(u, name) for u in t.types))
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.EnumType():
            return st.sampled_from([m.value for m in t.cls if isinstance(m, enum.Enum)])
        case mi.Metadata():
            return strategy(t.type, name)
    raise TypeError(f"no strategy for {t!r} ({name})")


@functools.cache
def wire(topic: str) -> st.SearchStrategy[dict[str, Any]]:
    """The wire form (a JSON object) of any message of ``topic``'s contract."""
    return strategy(mi.type_info(message_type(TOPIC_BY_NAME[topic])))


def numbers_and_sizes(t: mi.Type, path: str = "$") -> list[str]:
    """Where a contract type has a number without both bounds or a string, bytes, list or map
    without a maximum size (each as a path); empty when everything is bounded."""
    match t:
        case mi.IntType() | mi.FloatType():
            lo = t.ge if t.ge is not None else t.gt
            hi = t.le if t.le is not None else t.lt
            return [] if lo is not None and hi is not None else [path]
        case mi.StrType() | mi.BytesType():
            return [] if t.max_length is not None else [path]
        case mi.ListType():
            own = [] if t.max_length is not None else [path]
            return own + numbers_and_sizes(t.item_type, f"{path}[]")
        case mi.DictType():
            own = [] if t.max_length is not None else [path]
            return (own + numbers_and_sizes(t.key_type, f"{path}{{key}}")
                    + numbers_and_sizes(t.value_type, f"{path}{{}}"))
        case mi.StructType():
            return [p for f in t.fields
                    for p in numbers_and_sizes(f.type, f"{path}.{f.encode_name}")]
        case mi.UnionType():
            return [p for u in t.types for p in numbers_and_sizes(u, path)]
        case mi.Metadata():
            return numbers_and_sizes(t.type, path)
    return []
