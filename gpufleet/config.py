"""Settings: one frozen object per service, read once at start.

Every field ``x`` of a settings struct is read from the environment variable ``GPUFLEET_X``
(upper case), or else from the optional TOML file named by ``GPUFLEET_CONFIG`` (flat keys, the
field names), or else takes its default. A bad value fails at start with a message naming the
variable.

One TOML file serves every service: a key that any class of ``SETTINGS`` knows is accepted by
all of them (each service reads its own and leaves the others'); a key that none knows is
refused, named.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from gpufleet.contracts import invalid_field

ENV_PREFIX = "GPUFLEET_"


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


class BusSettings(Struct, frozen=True, kw_only=True):
    """What every service needs to reach the bus and the warehouse."""

    kafka_bootstrap: str = "localhost:9092"
    topic_prefix: str = "gpufleet"
    cluster: Annotated[str, Meta(min_length=1)] = "local"
    clickhouse_url: str = "http://default:@localhost:8123/default"
    topic_replication_factor: Annotated[int, Meta(ge=1)] = 1  # 3 on a production cluster
    log_level: str = "INFO"


class TenantSettings(BusSettings, frozen=True, kw_only=True):
    """What the scheduler and the api both read about tenants: one variable, one syntax."""

    # Per-tenant GPU quotas, "tenant=gpus,..." (GPUFLEET_TENANT_QUOTAS): the scheduler enforces
    # them, the api shows usage against them; a tenant without one has no quota.
    tenant_quotas: str = ""

    def __post_init__(self) -> None:
        tenant_values(self.tenant_quotas, "tenant_quotas")  # a bad value fails at start

    def quotas(self) -> dict[str, float]:
        """``{tenant: GPUs}``."""
        return tenant_values(self.tenant_quotas, "tenant_quotas")


def tenant_values(text: str, field_name: str) -> dict[str, float]:
    """``"a=8, b=2.5"`` -> ``{"a": 8.0, "b": 2.5}`` (blank entries skipped); anything else is
    refused with a message that names the variable and the syntax."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        try:
            number = float(value) if sep and name else -1.0
        except ValueError:
            number = -1.0
        if not 0 <= number < float("inf"):
            hint = f" (write {name.partition(':')[0]}={name.partition(':')[2]})" if (
                not sep and ":" in name) else ""
            raise ConfigError(f"{env_name(field_name)}: {part!r} is not tenant=number, a "
                              f"number of 0 or more{hint}; the form is \"team-a=16,team-b=8\"")
        if name in out:
            raise ConfigError(f"{env_name(field_name)}: tenant {name!r} is given twice")
        out[name] = number
    return out


S = TypeVar("S", bound=Struct)

# Every settings class, by service: "module:Class". The keys a shared TOML file may hold are
# the fields of all of these, so a new service's class is listed here (a test checks it).
SETTINGS: dict[str, str] = {
    "bus": "gpufleet.config:BusSettings",
    "warehouse": "services.warehouse.config:WarehouseSettings",
    "telemetry": "services.telemetry.config:TelemetrySettings",
    "executor": "services.executor.config:ExecutorSettings",
    "fleet": "services.fleet.config:FleetSettings",
    "ingest": "services.ingest.config:IngestSettings",
    "analytics": "services.ingest.analytics.config:AnalyticsSettings",
    "scheduler": "services.scheduler.config:SchedulerSettings",
    "api": "services.api.config:ApiSettings",
}


def settings_class(service: str) -> type[BusSettings]:
    """The settings class of ``service`` (a key of ``SETTINGS``), imported."""
    module, _, name = SETTINGS[service].partition(":")
    found: type[BusSettings] = getattr(importlib.import_module(module), name)
    return found


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _file_values(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get(ENV_PREFIX + "CONFIG")
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{ENV_PREFIX}CONFIG={path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{ENV_PREFIX}CONFIG={path}: not valid TOML: {e}") from e
    return dict(data.get("gpufleet", data))


# Settings that were renamed: set under the old name, they would be ignored without a word.
RENAMED: dict[str, str] = {
    "api_tenant_quotas": "tenant_quotas",  # was "tenant:gpus", now "tenant=gpus" as below
    "scheduler_quotas": "tenant_quotas",
}


def load(cls: type[S], env: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build ``cls`` from overrides, then ``GPUFLEET_*`` variables, then the TOML file."""
    env = os.environ if env is None else env
    from_file = _file_values(env)
    for old, new in RENAMED.items():
        if env_name(old) in env or old in from_file:
            raise ConfigError(f"{env_name(old)} is now {env_name(new)}, read by the scheduler "
                              f"and the api alike, as tenant=gpus: \"team-a=16,team-b=8\"")
    values: dict[str, Any] = {}
    for name in cls.__struct_fields__:
        if overrides.get(name) is not None:
            values[name] = overrides[name]
        elif env_name(name) in env:
            values[name] = env[env_name(name)]
        elif name in from_file:
            values[name] = from_file[name]
    others = set(from_file) - set(cls.__struct_fields__)
    unknown = sorted(others - _all_known_fields()) if others else []
    if unknown:
        raise ConfigError(f"{ENV_PREFIX}CONFIG: unknown setting(s): {', '.join(unknown)}")
    try:
        return msgspec.convert(values, type=cls, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_the_variable(str(e))) from e


def _name_the_variable(error: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.api_port`"; say which variable that is.
    what, path = invalid_field(error)
    if path is None or what == error:
        return error
    return f"{env_name(path.split('.')[0])}: {what}"


def _all_known_fields() -> set[str]:
    """Every field of every settings class in ``SETTINGS``."""
    known: set[str] = set()
    for service in SETTINGS:
        known.update(settings_class(service).__struct_fields__)
    return known


def describe(settings: Struct) -> dict[str, Any]:
    """The effective settings as ``{GPUFLEET_X: value}``, secrets masked."""
    out: dict[str, Any] = {}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if any(s in name for s in ("password", "token", "secret")) and value:
            value = "***"
        elif name.endswith("_url") and isinstance(value, str) and "@" in value:
            scheme, _, rest = value.partition("://")
            creds, _, host = rest.rpartition("@")
            value = f"{scheme}://{creds.split(':')[0]}:***@{host}"
        out[env_name(name)] = value
    return out
