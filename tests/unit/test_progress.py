"""Progress of long commands: a rich bar (done/total, rate, ETA) on a terminal; one log line per shard
elsewhere, and nothing drawn."""

from __future__ import annotations

import io
import logging

import pytest

from pipelines.runner.progress import ItemProgress

pytestmark = pytest.mark.unit


def test_without_a_terminal_each_shard_is_one_log_line(caplog: pytest.LogCaptureFixture, capsys) -> None:
    with caplog.at_level(logging.INFO, logger="hopchain.progress"):
        with ItemProgress("detect", 5, enabled=False) as p:
            p.advance(3)
            p.shard_done(0, {"images": 3, "detections": 7, "rejected": 1})
            p.advance(2)
            p.shard_done(1, {"detections": 2})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("detect shard 0: 3 images in ") and "(3/5 done); detections=7, rejected=1" in lines[0]
    assert lines[1].startswith("detect shard 1: 2 images in ") and "(5/5 done)" in lines[1]
    assert capsys.readouterr().err == ""  # no bar drawn


def test_on_a_terminal_the_bar_shows_done_total_rate_and_eta(monkeypatch, caplog) -> None:
    import rich.console

    buf = io.StringIO()
    real = rich.console.Console
    monkeypatch.setattr(rich.console, "Console",
                        lambda **kw: real(file=buf, force_terminal=True, width=120, color_system=None))
    with caplog.at_level(logging.INFO, logger="hopchain.progress"):
        with ItemProgress("segment", 4, enabled=True) as p:
            p.describe("segment shard 0")
            p.advance(2)
            p.advance(2)
            p.shard_done(0)
    text = buf.getvalue()
    assert "segment shard 0" in text and "4/4" in text and "100%" in text and "ETA" in text
    assert not caplog.records  # the bar replaces the log lines
