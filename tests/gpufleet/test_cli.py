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
