"""Bounds of the api's requests that more than one schema module states."""

from __future__ import annotations

MAX_HISTORY_STEPS = 20_000  # points per group one history (or waste) request may ask for
