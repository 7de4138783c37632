from __future__ import annotations

import pytest

from services.ingest.analytics.policy import DEFAULT_POLICIES, parse_policies


@pytest.mark.parametrize(
    ("text", "queue", "tenant", "expected"),
    [
        (DEFAULT_POLICIES, "any", "any", ("default", 1800.0, 5.0, 600.0, True)),
        ("default: idle_timeout=1h min_util=10 grace=90s requeue=no", None, None,
         ("default", 3600.0, 10.0, 90.0, False)),
        ("queue=a: idle_timeout=10m; default: idle_timeout=20m", "a", "t",
         ("queue=a", 600.0, 5.0, 600.0, True)),
        ("queue=a: idle_timeout=10m; default: idle_timeout=20m", "b", "t",
         ("default", 1200.0, 5.0, 600.0, True)),
        ("tenant=t: name=research-default idle_timeout=5m; queue=q: off", "x", "t",
         ("research-default", 300.0, 5.0, 600.0, True)),
        ("tenant=t: idle_timeout=5m; queue=q: off", "q", "t", None),
        ("queue=q: idle_timeout=5m", "other", "t", None),
        ("", "q", "t", None),
    ],
)
def test_policy_for_a_job(text: str, queue: str | None, tenant: str | None,
                          expected: tuple[str, float, float, float, bool] | None) -> None:
    p = parse_policies(text).for_job(queue, tenant)
    got = None if p is None else (p.name, p.idle_timeout_s, p.min_util, p.grace_s, p.requeue)
    assert got == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("default idle_timeout=5m", "expected 'scope: key=value"),
        ("everyone: idle_timeout=5m", "scope must be"),
        ("default: idle_timeout=-5m", "must be positive"),
        ("default: min_util=120", "within 0..100"),
        ("default: wait=5m", "unknown or malformed 'wait=5m'"),
        ("default: idle_timeout=soon", "could not convert"),
        ("queue=: off", "scope must be"),
    ],
)
def test_bad_policies_are_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="reclaim policy") as e:
        parse_policies(text)
    assert says in str(e.value)


def test_a_bad_setting_stops_the_start_naming_the_variable() -> None:
    from gpufleet.config import ConfigError, load
    from services.ingest.analytics.config import AnalyticsSettings
    from services.ingest.config import IngestSettings

    with pytest.raises(ConfigError, match="GPUFLEET_RECLAIM_POLICIES: reclaim policy"):
        load(AnalyticsSettings, env={"GPUFLEET_RECLAIM_POLICIES": "queue=a: grace=never"})
    ok = load(AnalyticsSettings, env={"GPUFLEET_RECLAIM_POLICIES": "queue=a: grace=1m"})
    ingest = load(IngestSettings, env={"GPUFLEET_WINDOW_S": "30"})
    assert ok.params(ingest).policies.for_job("a", None) is not None
    assert ok.params(ingest).settle_s == 30 + ingest.grace_s
