from __future__ import annotations

import pytest

from gpufleet.cli import COMMANDS, available, main


def test_config_prints_every_setting(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_CLUSTER", "east")
    assert main(["config"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "GPUFLEET_CLUSTER=east" in out
    assert any(line.startswith("GPUFLEET_KAFKA_BOOTSTRAP=") for line in out)


def test_bad_setting_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_CLUSTER", "")
    assert main(["config"]) == 2
    assert capsys.readouterr().err.strip() == (
        "gpufleet config: bad setting: GPUFLEET_CLUSTER: Expected `str` of length >= 1"
    )


def test_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_foundation_commands_are_available() -> None:
    assert {"up", "config", "topics", "schemas", "kafka"} <= set(available())
    assert set(available()) <= set(COMMANDS)


def test_schemas_check_passes_on_the_checked_in_files() -> None:
    assert main(["schemas", "check"]) == 0


def test_unreachable_kafka_is_one_clear_line(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert main(["topics", "create"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpufleet topics: cannot reach Kafka")
    assert "GPUFLEET_KAFKA_BOOTSTRAP" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GPUFLEET_API_PORT": "abc"}, "GPUFLEET_API_PORT='abc': not a port number"),
        ({"GPUFLEET_WAREHOUSE_PORT": "8x"}, "GPUFLEET_WAREHOUSE_PORT='8x': not a port number"),
    ],
)
def test_up_refuses_bad_ports_before_starting_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str], says: str,
) -> None:
    monkeypatch.setenv("GPUFLEET_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["up"]) == 1
    assert capsys.readouterr().err.strip() == f"gpufleet up: {says}"
