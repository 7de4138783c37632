"""What a worker writes next to its committed offsets, so a restart repeats its batches exactly.

Before a batch is inserted, the worker commits the batch's *start* offset again with an intent
naming its end (``e=``). A worker that takes over the partition after a crash reads the
intent and makes its first batch exactly ``[start, end)``: same rows, same de-duplication
token, so ClickHouse keeps one copy whether or not the first insert had landed.

Every commit also names where to re-read from to rebuild the windows that are still open
(``r=``, the first offset of the oldest open window) and the watermark at that point (``w=``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    end: int | None = None  # an intent: the batch starting at the committed offset ends here
    replay: int | None = None  # re-read from here to rebuild open windows
    watermark: float = 0.0  # the partition's watermark just before ``replay``

    def encode(self) -> str:
        parts = []
        if self.end is not None:
            parts.append(f"e={self.end}")
        if self.replay is not None:
            parts.append(f"r={self.replay}")
            parts.append(f"w={self.watermark!r}")
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str | None) -> Mark:
        """Parse commit metadata; anything unreadable is no mark at all."""
        values: dict[str, str] = {}
        for part in (text or "").split(";"):
            key, sep, value = part.partition("=")
            if sep:
                values[key.strip()] = value.strip()
        try:
            end = int(values["e"]) if "e" in values else None
            replay = int(values["r"]) if "r" in values else None
            watermark = float(values.get("w", "0"))
        except ValueError:
            return cls()
        return cls(end=end, replay=replay, watermark=watermark)


def token(topic: str, partition: int, start: int, end: int, table: str) -> str:
    """The insert de-duplication token of one partition's batch for one table."""
    return f"{topic}:{partition}:{start}-{end}:{table}"
