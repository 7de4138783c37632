"""The cluster model: nodes and GPUs in numpy arrays, so one decision over 10,000 GPUs is fast.

Row ``n`` is a node, column ``g`` a GPU slot on it. ``used`` is the GPU share allocated, in
thousandths; ``eff`` is the share a job may still take (0 on a missing, unhealthy or offline
GPU). Per-node summaries (``whole``: fully free GPUs, ``best``: largest free share,
``free_total``) are refreshed row by row as jobs come and go.

Nodes are also grouped by *free shape*: the free shares of their GPUs (as a sorted multiset),
free CPU, free memory, GPU model, largest free NVLink block and whether the node is usable
(online, with a healthy GPU). ``shape[n]`` is the node's shape
id; ids are interned and never reused, so a plugin may cache any value that depends only on
the shape (FGD's fragmentation) by id, and recompute only for shapes it has not seen. A
cluster of 12,500 nodes has a few hundred distinct shapes at any time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.scheduler.jobs import FULL

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class NodeSpec:
    """What a node has, as the inventory says."""

    name: str
    model: str
    gpus: int
    cpu_milli: int = 0
    memory_mib: int = 0
    healthy: tuple[bool, ...] = ()  # per GPU; empty means all healthy
    domains: tuple[int, ...] = ()  # NVLink domain per GPU; empty means one domain
    online: bool = True


@dataclass(frozen=True)
class Slot:
    """One member of a job on one node: GPU indices and the share taken on each."""

    node: int
    gpus: tuple[int, ...]
    milli: int
    cpu_milli: int = 0
    memory_mib: int = 0


def _grow(a: npt.NDArray[np.generic], rows: int, cols: int | None, fill: object) -> npt.NDArray[
        np.generic]:
    shape = (rows,) if a.ndim == 1 else (rows, cols or a.shape[1])
    out = np.full(shape, fill, dtype=a.dtype)
    if a.ndim == 1:
        out[: a.shape[0]] = a
    else:
        out[: a.shape[0], : a.shape[1]] = a
    return out


# The columns of ``ShapeTable.host``: free CPU, free memory, model index, largest free NVLink
# block (see Cluster.block), whole free GPUs (see Cluster.whole), usable (1: online with at
# least one healthy GPU, see Cluster.usable_nodes).
HOST = ("cpu", "mem", "model", "block", "whole", "usable")
CPU, MEM, MODEL, BLOCK, WHOLE, USABLE = range(len(HOST))
_EPOCHS = itertools.count()  # ShapeTable.epoch: unique in the process


@dataclass
class ShapeTable:
    """Interned free shapes: row ``i`` of ``eff`` is shape id ``i``'s GPU free shares sorted
    high to low, of ``host`` the rest (``HOST``). ``epoch`` names one numbering of the ids: no
    two tables, and no two numberings of one table (the GPU columns grew), share it, so a
    cache by id kept across clusters (a profile used for one simulation after another) or
    across a renumbering knows to start over."""

    gpus: int
    ids: dict[tuple[int, ...], int] = field(default_factory=dict)
    eff: IntArray = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    # one column each of ``HOST``
    host: IntArray = field(default_factory=lambda: np.zeros((0, len(HOST)), np.int64))
    epoch: int = field(default_factory=lambda: next(_EPOCHS))

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, eff_sorted: list[int], cpu: int, mem: int, model: int, block: int = 0,
               usable: bool = True) -> int:
        key = (*eff_sorted, cpu, mem, model, block, usable)  # rows all have ``gpus`` columns
        sid = self.ids.get(key)
        if sid is None:
            sid = len(self.ids)
            if sid >= self.eff.shape[0]:
                rows = max(64, 2 * sid)
                self.eff = _grow(self.eff, rows, self.gpus, 0)  # type: ignore[assignment]
                self.host = _grow(self.host, rows, len(HOST), 0)  # type: ignore[assignment]
            self.eff[sid] = eff_sorted
            self.host[sid] = (cpu, mem, model, block, eff_sorted.count(FULL), usable)
            self.ids[key] = sid
        return sid

    def reset(self, gpus: int) -> None:
        self.gpus, self.ids, self.epoch = gpus, {}, next(_EPOCHS)
        self.eff = np.zeros((0, gpus), np.int64)
        self.host = np.zeros((0, len(HOST)), np.int64)


@dataclass
class Cluster:
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    used: IntArray = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    exists: BoolArray = field(default_factory=lambda: np.zeros((0, 1), bool))
    healthy: BoolArray = field(default_factory=lambda: np.zeros((0, 1), bool))
    domain: IntArray = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    online: BoolArray = field(default_factory=lambda: np.zeros(0, bool))
    usable: BoolArray = field(default_factory=lambda: np.zeros(0, bool))  # see usable_nodes
    model: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    cpu_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    mem_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    cpu_used: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    mem_used: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    cpu_free: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))  # total - used
    mem_free: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    eff: IntArray = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    whole: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    best: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    free_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    version: int = 0  # bumped when nodes come, go or change health
    shape: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    block: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))  # see refresh
    shapes: ShapeTable = field(default_factory=lambda: ShapeTable(1))
    _masks: dict[object, BoolArray] = field(default_factory=dict)  # by models; "usable"; "every"
    # Per node, as plain lists (read on every allocation): whether each GPU slot holds a
    # healthy GPU, and its NVLink domain; set by upsert.
    good: list[list[bool]] = field(default_factory=list)
    _domains: list[list[int]] = field(default_factory=list)
    # The last ``by_shape`` answer and the nodes array it was for (every score plugin of one
    # decision asks about the same candidates); dropped whenever a node's shape may change.
    _by_shape: tuple[IntArray, tuple[IntArray, IntArray]] | None = None

    # -- shape -------------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def upsert(self, spec: NodeSpec) -> int:
        """Add a node or update it from new inventory; allocations on it are kept."""
        n = self.index.get(spec.name)
        if n is None:
            n = self._append(spec.name, spec.gpus)
        if spec.gpus > self.used.shape[1]:
            self._widen(spec.gpus)
        if spec.model not in self.models:
            self.models.append(spec.model)
        g = spec.gpus
        self.exists[n] = False
        self.exists[n, :g] = True
        health = spec.healthy or (True,) * g
        self.healthy[n] = False
        self.healthy[n, :g] = health[:g]
        self.domain[n, :g] = spec.domains[:g] if spec.domains else 0
        self.online[n] = spec.online
        self.model[n] = self.models.index(spec.model)
        self.cpu_total[n] = spec.cpu_milli
        self.mem_total[n] = spec.memory_mib
        self.good[n] = [bool(e and h) for e, h in zip(self.exists[n].tolist(),
                                                        self.healthy[n].tolist(), strict=True)]
        self._domains[n] = self.domain[n].tolist()
        self.usable[n] = spec.online and any(self.good[n])
        self.version += 1
        self._masks.clear()
        self.refresh(n)
        return n

    def _append(self, name: str, gpus: int) -> int:
        n = self.n_nodes
        rows = max(16, n * 2) if n >= self.used.shape[0] else self.used.shape[0]
        if n >= self.used.shape[0]:
            cols = max(self.used.shape[1], gpus)
            for attr, fill in (("used", 0), ("exists", False), ("healthy", False), ("domain", 0),
                               ("eff", 0), ("online", False), ("usable", False), ("model", 0),
                               ("cpu_total", 0), ("mem_total", 0), ("cpu_used", 0),
                               ("mem_used", 0), ("cpu_free", 0), ("mem_free", 0), ("whole", 0),
                               ("best", 0), ("free_total", 0), ("shape", 0), ("block", 0)):
                setattr(self, attr, _grow(getattr(self, attr), rows, cols, fill))
        self.names.append(name)
        self.index[name] = n
        self.good.append([False] * self.used.shape[1])
        self._domains.append([0] * self.used.shape[1])
        return n

    def _widen(self, cols: int) -> None:
        rows = self.used.shape[0]
        for attr, fill in (("used", 0), ("exists", False), ("healthy", False), ("domain", 0),
                           ("eff", 0)):
            setattr(self, attr, _grow(getattr(self, attr), rows, cols, fill))
        for m in range(self.n_nodes):
            self.good[m] += [False] * (cols - len(self.good[m]))
            self._domains[m] += [0] * (cols - len(self._domains[m]))

    def view(self) -> slice:
        """The rows that are real nodes (arrays have spare rows to grow into)."""
        return slice(0, self.n_nodes)

    # -- allocation --------------------------------------------------------------------------

    def refresh(self, n: int) -> None:
        self._by_shape = None
        # A row has a few GPUs: plain Python over them is faster than numpy calls.
        if self.usable[n]:
            free = [FULL - u if g and u < FULL else 0 for u, g in zip(
                self.used[n].tolist(), self.good[n], strict=True)]
        else:
            free = [0] * self.used.shape[1]
        self.eff[n] = free
        whole = free.count(FULL)
        self.whole[n] = whole
        self.best[n] = max(free, default=0)
        self.free_total[n] = sum(free)
        block = 0
        if whole:
            doms = self._domains[n]
            block = max(map([doms[g] for g, f in enumerate(free) if f == FULL].count,
                            set(doms)))
        self.block[n] = block
        cpu = int(self.cpu_total[n] - self.cpu_used[n])
        mem = int(self.mem_total[n] - self.mem_used[n])
        self.cpu_free[n] = cpu
        self.mem_free[n] = mem
        if self.shapes.gpus != len(free) or len(self.shapes) > 8 * self.n_nodes + 4096:
            # GPU columns grew, or many shapes are gone: number the shapes in use anew.
            self.shapes.reset(len(free))
            for m in range(self.n_nodes):
                self._intern(m, self.eff[m].tolist(), int(self.cpu_free[m]),
                             int(self.mem_free[m]), int(self.block[m]))
        else:
            self._intern(n, free, cpu, mem, block)

    def by_shape(self, nodes: IntArray) -> tuple[IntArray, IntArray]:
        """The distinct shape ids among ``nodes`` and, per node, its index into them (one pass
        over the nodes; faster than sorting them)."""
        last = self._by_shape
        if last is not None and last[0] is nodes:
            return last[1]
        ids = self.shape[nodes]
        seen = np.zeros(len(self.shapes), bool)
        seen[ids] = True
        distinct = np.flatnonzero(seen)
        where = np.zeros(len(self.shapes), np.int64)
        where[distinct] = np.arange(len(distinct))
        answer = distinct, where[ids]
        self._by_shape = nodes, answer
        return answer

    def representatives(self, nodes: IntArray) -> IntArray:
        """One node per free shape among ``nodes`` (the first of each): nodes of one shape score
        alike, so scoring these is scoring all of them."""
        ids = self.shape[nodes]
        first = np.full(len(self.shapes), -1, np.int64)
        first[ids[::-1]] = nodes[::-1]
        return np.sort(first[first >= 0])

    def _intern(self, n: int, free: list[int], cpu: int, mem: int, block: int) -> None:
        """Node ``n`` takes the id of its free shape (``free`` is sorted here, in place)."""
        free.sort(reverse=True)
        self.shape[n] = self.shapes.intern(free, cpu, mem, int(self.model[n]), block,
                                           bool(self.usable[n]))

    def allocate(self, slot: Slot) -> None:
        self._take(slot, 1)

    def release(self, slot: Slot) -> None:
        self._take(slot, -1)

    def _take(self, slot: Slot, sign: int) -> None:
        n = slot.node
        row = self.used[n]
        for g in slot.gpus:  # a few GPUs: faster than fancy indexing
            row[g] += sign * slot.milli
        if slot.cpu_milli:
            self.cpu_used[n] += sign * slot.cpu_milli
        if slot.memory_mib:
            self.mem_used[n] += sign * slot.memory_mib
        self.refresh(n)

    def pick_gpus(self, n: int, gpus: int, milli: int, share: int = -1) -> tuple[int, ...]:
        """The GPUs a member takes on node ``n``: for a share, a GPU with ``share`` free when
        given, else the fullest GPU it fits on (best fit); for whole GPUs, as few NVLink
        domains as possible, tightest domain first."""
        row = self.eff[n].tolist()  # a few GPUs: plain Python is faster than numpy calls
        if milli < FULL:
            if share >= milli and share in row:
                return (row.index(share),)
            best, tightest = 0, FULL + 1
            for g, free in enumerate(row):
                if milli <= free < tightest:
                    best, tightest = g, free
            return (best,)
        doms = self._domains[n]
        by_domain: dict[int, list[int]] = {}  # the free GPUs of each domain, in index order
        for g, free in enumerate(row):
            if free == FULL:
                by_domain.setdefault(doms[g], []).append(g)
        if len(by_domain) == 1:
            return tuple(next(iter(by_domain.values()))[:gpus])
        sizes = sorted((len(free), d) for d, free in by_domain.items())
        fitting = [d for count, d in sizes if count >= gpus]
        if fitting:  # the tightest domain that holds the member
            return tuple(by_domain[fitting[0]][:gpus])
        picked: list[int] = []  # else the largest domains first
        for _, d in reversed(sizes):
            picked.extend(by_domain[d])
        return tuple(sorted(picked[:gpus]))

    # -- questions ---------------------------------------------------------------------------

    def _kept(self, key: object, mask: BoolArray) -> BoolArray:
        mask.flags.writeable = False  # shared by every decision until the inventory changes
        self._masks[key] = mask
        return mask

    def every_node(self) -> BoolArray:
        """All True, one per node (read-only; cached until the inventory changes)."""
        mask = self._masks.get("every")
        return mask if mask is not None else self._kept("every", np.ones(self.n_nodes, bool))

    def usable_nodes(self) -> BoolArray:
        """Online nodes with at least one healthy GPU (read-only; cached until the inventory
        changes)."""
        mask = self._masks.get("usable")
        return mask if mask is not None else self._kept("usable", self.usable[self.view()].copy())

    def model_mask(self, models: tuple[str, ...]) -> BoolArray:
        """Nodes whose GPU model is one of ``models`` (all nodes when empty; read-only)."""
        mask = self._masks.get(models)
        if mask is None:
            if not models:
                return self.every_node()
            ids = [i for i, m in enumerate(self.models) if m in models]
            mask = self._kept(models, np.isin(self.model[self.view()], ids))
        return mask

    def capacity_milli(self) -> int:
        """All GPU share that could be given out (healthy GPUs of online nodes)."""
        v = self.view()
        return int((self.exists[v] & self.healthy[v] & self.online[v, None]).sum()) * FULL

    def used_milli(self) -> int:
        v = self.view()
        return int(self.used[v][self.exists[v]].sum())

    def largest_gang(self, gpus: int, milli: int) -> int:
        """How many members of ``gpus`` GPUs (``milli`` each) an empty cluster could hold."""
        v = self.view()
        good = (self.exists[v] & self.healthy[v]).sum(axis=1)
        per_gpu = FULL // milli if milli < FULL else 1
        return int((good * per_gpu // max(gpus, 1)).sum())
