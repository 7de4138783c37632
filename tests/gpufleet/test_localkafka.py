from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet import localkafka
from gpufleet.localkafka import KafkaSetupError, LocalKafka


@pytest.mark.parametrize(("missing", "says"), [("java", "Java 17"), ("mvn", "Maven")])
def test_missing_tool_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str, says: str
) -> None:
    monkeypatch.setattr(localkafka, "CACHE", tmp_path)  # no jars cached there
    real_which = localkafka.shutil.which
    monkeypatch.setattr(
        localkafka.shutil, "which", lambda tool: None if tool == missing else real_which(tool)
    )
    with pytest.raises(KafkaSetupError, match=f"`{missing}` not found.*{says}.*apt-get install"):
        localkafka.ensure_jars(quiet=True)


def test_server_properties_are_filled_in(tmp_path: Path) -> None:
    broker = LocalKafka(data=tmp_path, port=19092, controller_port=19093)
    text = broker._properties().read_text()
    assert "listeners=PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093" in text
    assert f"log.dirs={tmp_path / 'log'}" in text
    assert "{" not in text


def test_a_port_taken_by_another_program_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        broker = LocalKafka(data=tmp_path, port=s.getsockname()[1], controller_port=1)
        with pytest.raises(KafkaSetupError, match="taken by another program"):
            broker.start()
