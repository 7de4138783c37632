"""XID errors from NVML: a thread blocked in ``nvmlEventSetWait_v2`` collects them."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from gpufleet.contracts import GpuHealth
from services.telemetry.sources import HealthEvent

log = logging.getLogger(__name__)

XID_LOST = frozenset({79})  # the GPU has fallen off the bus
XID_HARDWARE = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120})


def xid_event(gpu: int, xid: int) -> HealthEvent:
    health = (GpuHealth.LOST if xid in XID_LOST
              else GpuHealth.DEGRADED if xid in XID_HARDWARE else GpuHealth.OK)
    return HealthEvent(gpu, health, "xid", f"XID {xid}",
                       "critical" if xid in XID_HARDWARE else "warning")


class XidWatcher:
    """Registers every GPU for critical XID events and waits for them on a thread of its own.

    ``take()`` hands over the XIDs seen since the last call, by GPU index; each XID also goes
    to ``events`` as a ``HealthEvent``.
    """

    def __init__(self, nv: Any, handles: list[Any], events: deque[HealthEvent],
                 wait_ms: int = 500) -> None:
        self._nv = nv
        self._handles = handles
        self._events = events
        self._wait_ms = wait_ms
        self._xids: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="nvml-xid", daemon=True)
        self._thread.start()

    def take(self) -> dict[int, list[int]]:
        with self._lock:
            xids, self._xids = self._xids, {}
        return xids

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        nv = self._nv
        try:
            es = nv.nvmlEventSetCreate()
        except nv.NVMLError as e:
            log.info("no XID events: %s", e)
            return
        registered = 0
        for h in self._handles:
            try:
                nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, es)
                registered += 1
            except nv.NVMLError:
                continue
        while registered and not self._stop.is_set():
            try:
                data = nv.nvmlEventSetWait_v2(es, self._wait_ms)
                index = nv.nvmlDeviceGetIndex(data.device)
            except nv.NVMLError_Timeout:
                continue
            except nv.NVMLError as e:
                log.warning("XID wait: %s", e)
                self._stop.wait(1.0)
                continue
            self._seen(int(index), int(data.eventData))
        try:
            nv.nvmlEventSetFree(es)
        except nv.NVMLError as e:
            log.info("XID event set: %s", e)

    def _seen(self, gpu: int, xid: int) -> None:
        if not 0 <= gpu < len(self._handles):
            return
        with self._lock:
            self._xids.setdefault(gpu, []).append(xid)
        self._events.append(xid_event(gpu, xid))
