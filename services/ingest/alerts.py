"""Idle allocated GPUs: the detector now lives with the other stream analytics, in
``services.ingest.analytics.idle``; the writer's core imports it from here."""

from __future__ import annotations

from services.ingest.analytics.idle import KIND, IdleStreak, IdleTracker, alert_id

Idle = IdleStreak

__all__ = ["KIND", "Idle", "IdleTracker", "alert_id"]
