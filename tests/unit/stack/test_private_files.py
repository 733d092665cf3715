"""Least privilege on disk (issue 30, item 4): the stack's folders are 0700 and its files lose every
group/other permission, when made and when a looser home is found on start. The running stack is
checked in ``tests/integration/test_local_stack.py``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.stack.process import PRIVATE_UMASK, ManagedProcess, make_private, private_dir

pytestmark = pytest.mark.unit


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_private_dir_makes_missing_parents_0700_and_repairs_an_existing_one(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "home" / "credentials")
    assert mode(made) == mode(made.parent) == 0o700
    os.chmod(made, 0o755)
    assert mode(private_dir(made)) == 0o700


def test_a_loose_home_is_repaired(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "labelstudio").mkdir(parents=True, mode=0o755)
    db = home / "labelstudio" / "label_studio.sqlite3"
    db.write_text("tokens")
    os.chmod(db, 0o644)
    tool = home / "run.sh"
    tool.write_text("#!/bin/sh\n")
    os.chmod(tool, 0o755)
    os.symlink("/etc/hostname", home / "link")
    before = mode(Path("/etc/hostname"))
    changed = make_private(home)
    assert {mode(home), mode(home / "labelstudio"), mode(db), mode(tool)} == {0o700, 0o600}
    assert (mode(db), mode(tool)) == (0o600, 0o700)
    assert mode(Path("/etc/hostname")) == before  # a symlink is never followed
    assert set(changed) == {home, home / "labelstudio", db, tool} and make_private(home) == []


def test_processes_the_stack_starts_create_private_files(tmp_path: Path) -> None:
    proc = ManagedProcess("maker", tmp_path)
    script = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x'); pathlib.Path(sys.argv[2]).mkdir()"
    proc.start([sys.executable, "-c", script, str(tmp_path / "made.db"), str(tmp_path / "made")], os.environ)
    for _ in range(100):
        if not proc.running():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert mode(tmp_path / "made.db") == 0o600 and mode(tmp_path / "made") == 0o700
    assert mode(proc.log_file) == mode(proc.pid_file) == 0o600
    assert mode(proc.log_file.parent) == mode(proc.pid_file.parent) == 0o700
    assert PRIVATE_UMASK == 0o077
