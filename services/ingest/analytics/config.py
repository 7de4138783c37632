"""Settings of the analytics app (``GPUFLEET_*`` variables, see docs/analytics.md).

The app reads the ingest settings too (``IngestSettings``, loaded beside these): the idle
threshold and timeout of the idle-GPU alerts, the window and grace of ``gpu.util`` (how long
after a job ends its last windows close), the job retention and the session timeout.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from gpufleet.config import BusSettings
from services.ingest.config import IngestSettings

from .core import Params
from .policy import DEFAULT_POLICIES, parse_policies


class AnalyticsSettings(BusSettings, frozen=True, kw_only=True):
    analytics_app_id: str = "analytics"  # the faust app id, under the topic prefix
    reclaim_policies: str = DEFAULT_POLICIES  # see services/ingest/analytics/policy.py
    undrain_after_s: Annotated[float, Meta(gt=0)] = 900.0  # healthy this long: undrained
    rightsizing_every_s: Annotated[float, Meta(gt=0)] = 600.0  # running jobs' reports
    analytics_store: str = "memory://"  # tables are rebuilt from their changelogs at start
    analytics_ops_host: str = "0.0.0.0"
    analytics_ops_port: Annotated[int, Meta(ge=0, le=65535)] = 9110  # 0: no ops endpoint

    def __post_init__(self) -> None:
        try:
            parse_policies(self.reclaim_policies)
        except ValueError as e:
            raise ValueError(f"GPUFLEET_RECLAIM_POLICIES: {e}") from None

    def params(self, ingest: IngestSettings) -> Params:
        return Params(idle_threshold=ingest.idle_util_threshold, idle_after_s=ingest.idle_after_s,
                      policies=parse_policies(self.reclaim_policies),
                      undrain_after_s=self.undrain_after_s,
                      rightsizing_every_s=self.rightsizing_every_s,
                      settle_s=ingest.window_s + ingest.grace_s,
                      job_retention_s=ingest.job_retention_s)
