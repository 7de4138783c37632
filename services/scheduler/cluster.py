"""The cluster model: nodes and GPUs in numpy arrays, so one decision over 10,000 GPUs is fast.

Row ``n`` is a node, column ``g`` a GPU slot on it. ``used`` is the GPU share allocated, in
thousandths; ``eff`` is the share a job may still take (0 on a missing, unhealthy or offline
GPU). Per-node summaries (``whole``: fully free GPUs, ``best``: largest free share,
``free_total``) are refreshed row by row as jobs come and go.
"""

from __future__ import annotations

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
    model: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    cpu_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    mem_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    cpu_used: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    mem_used: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    eff: IntArray = field(default_factory=lambda: np.zeros((0, 1), np.int64))
    whole: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    best: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    free_total: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    version: int = 0  # bumped when nodes come, go or change health
    _masks: dict[object, BoolArray] = field(default_factory=dict)  # by models; "usable"

    # -- shape -------------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    @property
    def cpu_free(self) -> IntArray:
        return self.cpu_total - self.cpu_used

    @property
    def mem_free(self) -> IntArray:
        return self.mem_total - self.mem_used

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
                               ("eff", 0), ("online", False), ("model", 0), ("cpu_total", 0),
                               ("mem_total", 0), ("cpu_used", 0), ("mem_used", 0), ("whole", 0),
                               ("best", 0), ("free_total", 0)):
                setattr(self, attr, _grow(getattr(self, attr), rows, cols, fill))
        self.names.append(name)
        self.index[name] = n
        return n

    def _widen(self, cols: int) -> None:
        rows = self.used.shape[0]
        for attr, fill in (("used", 0), ("exists", False), ("healthy", False), ("domain", 0),
                           ("eff", 0)):
            setattr(self, attr, _grow(getattr(self, attr), rows, cols, fill))

    def view(self) -> slice:
        """The rows that are real nodes (arrays have spare rows to grow into)."""
        return slice(0, self.n_nodes)

    # -- allocation --------------------------------------------------------------------------

    def refresh(self, n: int) -> None:
        usable = self.exists[n] & self.healthy[n] & self.online[n]
        row = np.where(usable, np.maximum(FULL - self.used[n], 0), 0)
        self.eff[n] = row
        self.whole[n] = int((row == FULL).sum())
        self.best[n] = int(row.max(initial=0))
        self.free_total[n] = int(row.sum())

    def allocate(self, slot: Slot) -> None:
        self.used[slot.node, list(slot.gpus)] += slot.milli
        self.cpu_used[slot.node] += slot.cpu_milli
        self.mem_used[slot.node] += slot.memory_mib
        self.refresh(slot.node)

    def release(self, slot: Slot) -> None:
        self.used[slot.node, list(slot.gpus)] -= slot.milli
        self.cpu_used[slot.node] -= slot.cpu_milli
        self.mem_used[slot.node] -= slot.memory_mib
        self.refresh(slot.node)

    def pick_gpus(self, n: int, gpus: int, milli: int) -> tuple[int, ...]:
        """The GPUs a member takes on node ``n``: for a share, the fullest GPU it fits on
        (best fit); for whole GPUs, as few NVLink domains as possible, tightest domain first."""
        row = self.eff[n]
        if milli < FULL:
            cand = np.where(row >= milli, row, FULL + 1)
            return (int(cand.argmin()),)
        free = np.flatnonzero(row == FULL)
        doms = self.domain[n, free]
        groups = sorted((int((doms == d).sum()), int(d)) for d in np.unique(doms))
        fitting = [d for size, d in groups if size >= gpus]
        order = [fitting[0]] if fitting else [d for _, d in reversed(groups)]
        picked: list[int] = []
        for d in order:
            picked.extend(int(g) for g in free[doms == d])
        return tuple(sorted(picked[:gpus]))

    # -- questions ---------------------------------------------------------------------------

    def usable_nodes(self) -> BoolArray:
        """Online nodes with at least one healthy GPU (cached until the inventory changes)."""
        mask = self._masks.get("usable")
        if mask is None:
            v = self.view()
            mask = self.online[v] & (self.exists[v] & self.healthy[v]).any(axis=1)
            self._masks["usable"] = mask
        return mask

    def model_mask(self, models: tuple[str, ...]) -> BoolArray:
        """Nodes whose GPU model is one of ``models`` (all nodes when empty)."""
        mask = self._masks.get(models)
        if mask is None:
            if models:
                ids = [i for i, m in enumerate(self.models) if m in models]
                mask = np.isin(self.model[self.view()], ids)
            else:
                mask = np.ones(self.n_nodes, bool)
            self._masks[models] = mask
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
