"""Settings of the api service (``gpufleet api``)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from gpufleet.config import TenantSettings


class ApiSettings(TenantSettings, frozen=True, kw_only=True):
    """Where the api listens and who may do what.

    ``api_tokens`` is ``"token:role[:tenant],..."`` with role ``viewer``, ``submitter`` (its
    tenant is required) or ``admin``. With no tokens at all, authentication is off and every
    caller is admin (for one machine on loopback). ``api_open_reads`` lets callers without a
    token read (GET) when tokens are set. Tenant quotas (``tenant_quotas``, shared with the
    scheduler) are shown on the tenant page and weight the fair share there.
    """

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    api_tokens: str = ""
    api_open_reads: bool = True
    api_max_body_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024
    api_stream_interval_s: Annotated[float, Meta(gt=0)] = 1.0
    api_idle_util_pct: Annotated[float, Meta(ge=0, le=100)] = 5.0
    api_samples_tail: Annotated[int, Meta(ge=1)] = 5000  # samples re-read per partition at start
    api_events_tail: Annotated[int, Meta(ge=1)] = 100_000  # job events re-read per partition
    api_max_jobs: Annotated[int, Meta(ge=10)] = 20_000  # jobs kept in memory (oldest go first)
    # a job seen only in its own events (never submitted, placed or listed by the scheduler)
    # that has sent none for this long is dropped (executors heartbeat every 10 s)
    # a submit or cancel the broker has not confirmed in this time is answered 503 with
    # Retry-After: api_retry_after_s (the broker is away, or its partition has no leader)
    api_publish_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    api_retry_after_s: Annotated[float, Meta(gt=0)] = 5.0
    api_job_lease_s: Annotated[float, Meta(gt=0)] = 60.0
