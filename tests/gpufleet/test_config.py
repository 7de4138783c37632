from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec import Struct

from gpufleet.config import (
    SETTINGS,
    BusSettings,
    ConfigError,
    TenantSettings,
    describe,
    load,
    settings_class,
    tenant_values,
)

ROOT = Path(__file__).resolve().parents[2]


class DemoSettings(BusSettings, frozen=True, kw_only=True):
    api_port: int = 8080
    api_token_secret: str = ""
    tick_s: float = 1.0


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({}, "api_port", 8080),
        ({"GPUFLEET_API_PORT": "9000"}, "api_port", 9000),
        ({"GPUFLEET_TICK_S": "0.1"}, "tick_s", 0.1),
        ({"GPUFLEET_KAFKA_BOOTSTRAP": "k1:9092,k2:9092"}, "kafka_bootstrap", "k1:9092,k2:9092"),
        ({"GPUFLEET_TOPIC_PREFIX": "prod"}, "topic_prefix", "prod"),
    ],
)
def test_values_come_from_prefixed_environment_variables(
    env: dict[str, str], field: str, expected: object
) -> None:
    assert getattr(load(DemoSettings, env), field) == expected


def test_toml_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "gpufleet.toml"
    path.write_text('[gpufleet]\napi_port = 7000\ncluster = "east"\n')
    env = {"GPUFLEET_CONFIG": str(path), "GPUFLEET_CLUSTER": "west"}
    settings = load(DemoSettings, env)
    assert (settings.api_port, settings.cluster) == (7000, "west")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GPUFLEET_API_PORT": "eighty"}, "GPUFLEET_API_PORT: Expected `int`"),
        ({"GPUFLEET_TICK_S": "fast"}, "GPUFLEET_TICK_S: Expected `float`"),
        ({"GPUFLEET_CLUSTER": ""}, "GPUFLEET_CLUSTER: Expected `str` of length >= 1"),
        ({"GPUFLEET_CONFIG": "/no.toml"}, "GPUFLEET_CONFIG=/no.toml: cannot read"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(DemoSettings, env)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpufleet.toml"
    path.write_text("api_prot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*api_prot"):
        load(DemoSettings, {"GPUFLEET_CONFIG": str(path)})


def test_settings_are_frozen() -> None:
    settings = load(DemoSettings, {})
    with pytest.raises(AttributeError):
        settings.api_port = 1  # type: ignore[misc]


def test_describe_masks_secrets() -> None:
    settings = load(DemoSettings, {
        "GPUFLEET_API_TOKEN_SECRET": "hunter2",
        "GPUFLEET_CLICKHOUSE_URL": "http://writer:pw@ch:8123/db",
    })
    shown = describe(settings)
    assert shown["GPUFLEET_API_TOKEN_SECRET"] == "***"
    assert shown["GPUFLEET_CLICKHOUSE_URL"] == "http://writer:***@ch:8123/db"
    assert shown["GPUFLEET_API_PORT"] == 8080


def test_overrides_beat_everything() -> None:
    assert load(DemoSettings, {"GPUFLEET_API_PORT": "1"}, api_port=2).api_port == 2


def test_plain_struct_is_accepted() -> None:
    class Tiny(Struct, frozen=True):
        name: str = "x"

    assert load(Tiny, {"GPUFLEET_NAME": "y"}).name == "y"


# -- one file for every service --------------------------------------------------------------

SHARED_FILE = """[gpufleet]
cluster = "east"
window_s = 120
api_port = 9001
scheduler_queue_order = "priority"
warehouse_data = "/var/lib/gpufleet"
sim_nodes = 4
"""


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_one_file_holding_every_services_keys_serves_each_service(
    tmp_path: Path, service: str
) -> None:
    path = tmp_path / "gpufleet.toml"
    path.write_text(SHARED_FILE)
    settings = load(settings_class(service), {"GPUFLEET_CONFIG": str(path)})
    assert settings.cluster == "east"
    for key, value in (("window_s", 120), ("api_port", 9001), ("sim_nodes", 4)):
        if key in settings.__struct_fields__:
            assert getattr(settings, key) == value


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_a_key_no_service_knows_is_refused_by_every_service(
    tmp_path: Path, service: str
) -> None:
    path = tmp_path / "gpufleet.toml"
    path.write_text(SHARED_FILE + "windows_s = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\): windows_s$"):
        load(settings_class(service), {"GPUFLEET_CONFIG": str(path)})


def test_api_reads_a_file_that_holds_ingests_window(tmp_path: Path) -> None:
    # Only the api's settings module imported, as in a `gpufleet api` process: the list of
    # classes is explicit, not what happens to be imported.
    path = tmp_path / "gpufleet.toml"
    path.write_text("window_s = 30\napi_port = 8081\n")
    code = ("import sys; from gpufleet.config import load; "
            "from services.api.config import ApiSettings; "
            "assert 'services.ingest.config' not in sys.modules; "
            "print(load(ApiSettings).api_port)")
    env = {**os.environ, "GPUFLEET_CONFIG": str(path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout.strip()) == (0, "8081"), done.stderr


def test_every_settings_class_of_the_tree_is_listed() -> None:
    listed = {settings_class(s) for s in SETTINGS}
    found = set()
    for path in sorted((ROOT / "services").glob("*/config.py")):
        module = importlib.import_module(f"services.{path.parent.name}.config")
        found |= {v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, BusSettings)
                  and v.__module__ == module.__name__}
    assert found, "no settings class found under services/"
    assert found <= listed, f"not in gpufleet.config.SETTINGS: {found - listed}"


# -- tenant quotas: one variable, one syntax, read by the scheduler and the api ----------------

@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("team-a=16", {"team-a": 16.0}),
    (" team-a = 16 , team-b=2.5,", {"team-a": 16.0, "team-b": 2.5}),
    ("idle=0", {"idle": 0.0}),
])
def test_tenant_quotas_are_tenant_equals_gpus(text: str, expected: dict[str, float]) -> None:
    assert tenant_values(text, "tenant_quotas") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("team:8", r"'team:8' is not tenant=number.*\(write team=8\)"),  # the api's old form
    ("a=8,b:2", r"'b:2' .*\(write b=2\)"),
    ("team=lots", r"'team=lots' is not tenant=number"),
    ("team", r"'team' is not tenant=number"),
    ("=8", r"'=8' is not tenant=number"),
    ("team=-1", r"'team=-1' is not tenant=number"),
    ("team=nan", r"'team=nan' is not tenant=number"),
    ("a=1,a=2", r"tenant 'a' is given twice"),
])
def test_a_bad_quota_names_the_variable_and_the_syntax(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^GPUFLEET_TENANT_QUOTAS: " + message):
        tenant_values(text, "tenant_quotas")


@pytest.mark.parametrize("service", ["scheduler", "api"])
def test_the_scheduler_and_the_api_read_the_same_quotas(service: str) -> None:
    cls = settings_class(service)
    assert isinstance(cls, type) and issubclass(cls, TenantSettings)
    settings = load(cls, {"GPUFLEET_TENANT_QUOTAS": "team-a=16,team-b=8"})
    assert settings.quotas() == {"team-a": 16.0, "team-b": 8.0}
    with pytest.raises(ConfigError, match=r"GPUFLEET_TENANT_QUOTAS: 'team-a:16'.*team-a=16"):
        load(cls, {"GPUFLEET_TENANT_QUOTAS": "team-a:16"})


def test_fair_share_weights_take_the_same_syntax() -> None:
    from services.scheduler.config import SchedulerSettings

    assert load(SchedulerSettings, {"GPUFLEET_SCHEDULER_WEIGHTS": "a=2"}).weights() == {"a": 2.0}
    with pytest.raises(ConfigError, match=r"GPUFLEET_SCHEDULER_WEIGHTS: 'a:2'.*a=2"):
        load(SchedulerSettings, {"GPUFLEET_SCHEDULER_WEIGHTS": "a:2"})


@pytest.mark.parametrize("old", ["GPUFLEET_API_TENANT_QUOTAS", "GPUFLEET_SCHEDULER_QUOTAS"])
def test_an_old_quota_variable_is_refused_naming_the_new_one(old: str) -> None:
    with pytest.raises(ConfigError, match=f"^{old} is now GPUFLEET_TENANT_QUOTAS.*team-a=16"):
        load(settings_class("api"), {old: "team-a:16"})
