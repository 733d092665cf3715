"""Managed processes are stopped by their recorded pid (process group), never by name."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import psutil
import pytest

from pipelines.stack.process import ManagedProcess, StackError, free_port, port_in_use, wait_until

pytestmark = pytest.mark.unit

SLEEPER = [sys.executable, "-c", "import subprocess,sys,time; "
           "subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"]


def test_start_records_pid_and_stop_kills_the_whole_group(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path)
    pid = proc.start(SLEEPER, env={"PATH": "/usr/bin:/bin"})
    assert proc.running() and proc.pid == pid
    wait_until(lambda: len(psutil.Process(pid).children()) == 1, 10, 0.05, what="child")
    child = psutil.Process(pid).children()[0]
    with pytest.raises(StackError, match="already running"):
        proc.start(SLEEPER, env={})
    assert proc.stop(timeout_s=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not proc.pid_file.exists()
    assert proc.stop() is False  # idempotent


def test_a_process_whose_pid_file_was_deleted_is_still_stopped_by_its_pid(tmp_path: Path) -> None:
    """A test's temporary folder cleaned while its servers run (another pytest session rotating the basetemp
    folders did this here) took the pid files with it: the servers could no longer be stopped and leaked."""
    proc = ManagedProcess("orphan", tmp_path)
    pid = proc.start(SLEEPER, env={"PATH": "/usr/bin:/bin"})
    proc.pid_file.unlink()
    assert proc.running() and proc.pid == pid
    assert proc.stop(timeout_s=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not proc.running()


def test_stale_pid_file_never_signals_an_unrelated_process(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    # Our own pid with a wrong creation time: must be treated as stale, not as "running".
    proc.pid_file.write_text(json.dumps({"pid": psutil.Process().pid, "create_time": 1.0, "cmd": []}))
    assert not proc.running()
    assert proc.stop() is False
    assert psutil.Process().is_running()


def test_port_in_use_detects_a_listener() -> None:
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert port_in_use(port)


def test_exited_early_returns_the_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess("crasher", tmp_path)
    proc.start([sys.executable, "-c", "print('boom: bad flag'); raise SystemExit(3)"], env={})
    wait_until(lambda: not proc.running(), 10, 0.05, what="exit")
    assert "boom: bad flag" in (proc.exited_early() or "")
