"""Reclaim policies: per queue, per tenant, or a default, from one line of settings.

The setting is a list of policies separated by ``;``. Each is ``scope: key=value ...`` where
``scope`` is ``default``, ``queue=<name>`` or ``tenant=<name>``, and the keys are:

- ``idle_timeout``: how long a job's GPUs stay under ``min_util`` before it is warned;
- ``min_util``: the utilization (percent, mean over a window) under which a GPU is idle;
- ``grace``: how long after the warning its GPUs are reclaimed, unless busy again;
- ``requeue``: ``yes`` (a reclaimed job is requeued unless it says it is not restartable) or
  ``no`` (it is stopped unless it says it is restartable);
- ``name``: how the policy is named in reasons (by default its scope);
- ``off``: no reclaim for the jobs in this scope.

Durations take ``s``, ``m`` or ``h`` (a bare number is seconds). A job's policy is its queue's,
else its tenant's, else the default; with none of them, its GPUs are never reclaimed.

Example: ``default: idle_timeout=30m min_util=5 grace=10m; queue=prod: off;
tenant=research: name=research-default idle_timeout=1h grace=15m``.
"""

from __future__ import annotations

from msgspec import Struct, field

DEFAULT_POLICIES = "default: name=default idle_timeout=30m min_util=5 grace=10m requeue=yes"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class ReclaimPolicy(Struct, frozen=True, kw_only=True):
    name: str
    idle_timeout_s: float = 1800.0
    min_util: float = 5.0
    grace_s: float = 600.0
    requeue: bool = True
    enabled: bool = True


class Policies(Struct, frozen=True, kw_only=True):
    by_queue: dict[str, ReclaimPolicy] = field(default_factory=dict)
    by_tenant: dict[str, ReclaimPolicy] = field(default_factory=dict)
    default: ReclaimPolicy | None = None

    def for_job(self, queue: str | None, tenant: str | None) -> ReclaimPolicy | None:
        """The policy that applies to a job, or None when its GPUs are never reclaimed."""
        found = (self.by_queue.get(queue or "") or self.by_tenant.get(tenant or "")
                 or self.default)
        return found if found is not None and found.enabled else None


def parse_policies(text: str) -> Policies:
    """Parse the setting; a bad entry raises ValueError naming it."""
    by_queue: dict[str, ReclaimPolicy] = {}
    by_tenant: dict[str, ReclaimPolicy] = {}
    default: ReclaimPolicy | None = None
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        scope, colon, rest = entry.partition(":")
        scope = scope.strip()
        if not colon:
            raise ValueError(f"reclaim policy {entry!r}: expected 'scope: key=value ...'")
        policy = _policy(scope, rest.split(), entry)
        if scope == "default":
            default = policy
        elif scope.startswith("queue=") and scope[6:]:
            by_queue[scope[6:]] = policy
        elif scope.startswith("tenant=") and scope[7:]:
            by_tenant[scope[7:]] = policy
        else:
            raise ValueError(f"reclaim policy {entry!r}: scope must be default, queue=<name> "
                             "or tenant=<name>")
    return Policies(by_queue=by_queue, by_tenant=by_tenant, default=default)


def _policy(scope: str, words: list[str], entry: str) -> ReclaimPolicy:
    values: dict[str, object] = {"name": scope}
    for word in words:
        key, eq, value = word.partition("=")
        try:
            if key == "off" and not eq:
                values["enabled"] = False
            elif key == "idle_timeout":
                values["idle_timeout_s"] = _duration(value)
            elif key == "grace":
                values["grace_s"] = _duration(value)
            elif key == "min_util":
                values["min_util"] = _percent(value)
            elif key == "requeue" and value in ("yes", "no"):
                values["requeue"] = value == "yes"
            elif key == "name" and value:
                values["name"] = value
            else:
                raise ValueError(f"unknown or malformed {word!r}")
        except ValueError as e:
            raise ValueError(f"reclaim policy {entry!r}: {e}") from None
    return ReclaimPolicy(**values)  # type: ignore[arg-type]


def _duration(text: str) -> float:
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit is not None else text
    seconds = float(number) * (unit or 1.0)
    if not seconds > 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise ValueError(f"min_util {text!r} must be within 0..100")
    return value
