"""Registry pieces that need no server: tags, dvc.yaml completeness, checksums, tool runner, CLI."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from pipelines.config import REPO_ROOT, ReleaseConfig
from pipelines.release.dvc import ToolError, run_tool, tool_env
from pipelines.release.registry import (
    ChecksumError,
    ReleaseError,
    check_registry_url,
    next_tag,
    previous_tag,
    release_tags,
    stage_code_deps,
    verify_checkout,
)
from pipelines.store import S3Credentials

pytestmark = pytest.mark.unit

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def test_tags_are_dated_with_a_suffix_for_same_day_releases():
    day = dt.date(2026, 3, 9)
    assert next_tag([], day) == "v2026.03.09"
    assert next_tag(["v2026.03.09"], day) == "v2026.03.09.2"
    assert next_tag(["v2026.03.09", "v2026.03.09.2", "v2026.03.08"], day) == "v2026.03.09.3"
    tags = ["v2026.03.09.10", "v2026.03.09", "junk", "v2026.03.09.2", "v2025.12.31"]
    assert release_tags(tags) == ["v2025.12.31", "v2026.03.09", "v2026.03.09.2", "v2026.03.09.10"]
    assert previous_tag(tags) == "v2026.03.09.10" and previous_tag(["junk"]) is None


def _pipelines_imports(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipelines")}
    return found


def _module_file(name: str) -> str:
    path = REPO_ROOT / Path(*name.split("."))
    return str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(REPO_ROOT))


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_every_stage_lists_all_the_code_it_runs_as_deps(stage):
    spec = DVC_YAML["stages"][stage]
    entry = spec["cmd"].split("python -m ", 1)[1].split()[0]
    todo, needed = [entry], set()
    while todo:  # the stage module and everything of ours it imports, transitively
        name = todo.pop()
        rel = _module_file(name)
        if rel in needed:
            continue
        needed.add(rel)
        parts = name.split(".")
        needed |= {_module_file(".".join(parts[:i])) for i in range(1, len(parts))}  # package __init__s
        todo.extend(_pipelines_imports(REPO_ROOT / rel))
    assert needed <= set(spec["deps"]), f"missing deps: {sorted(needed - set(spec['deps']))}"
    assert "store" not in " ".join(needed)  # stages are file -> file: no object-store access
    for dep in spec["deps"]:
        assert (REPO_ROOT / dep).exists() or dep in ("data", "release")


def test_every_stage_param_is_a_release_knob_in_params_yaml():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for spec in DVC_YAML["stages"].values():
        for key in spec.get("params", []):
            section, name = key.split(".")
            assert section == "release" and name in params["release"] and name in ReleaseConfig.model_fields
    assert stage_code_deps() == sorted({d for s in DVC_YAML["stages"].values() for d in s["deps"]
                                        if d.startswith("pipelines/")})


def _fake_release(wc: Path) -> None:
    """A working copy as `dvc pull` leaves it: dvc.yaml, dvc.lock, a .dir listing in the cache."""
    files = {"data/train-00000-of-00001.parquet": b"shard", "index.json": b"{}"}
    listing = [{"md5": hashlib.md5(v).hexdigest(), "relpath": k} for k, v in sorted(files.items())]
    raw = json.dumps(listing).encode()
    dir_md5 = hashlib.md5(raw).hexdigest() + ".dir"
    obj = wc / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    obj.parent.mkdir(parents=True)
    obj.write_bytes(raw)
    for rel, data in files.items():
        (wc / "release" / rel).parent.mkdir(parents=True, exist_ok=True)
        (wc / "release" / rel).write_bytes(data)
    (wc / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"build": {"cmd": "x", "outs": ["release"]}}}))
    (wc / "dvc.lock").write_text(yaml.safe_dump(
        {"schema": "2.0", "stages": {"build": {"cmd": "x", "outs": [{"path": "release", "md5": dir_md5}]}}}))


def test_verify_checkout_recomputes_checksums_and_names_the_bad_file(tmp_path):
    _fake_release(tmp_path)
    assert verify_checkout(tmp_path) == 2
    (tmp_path / "release" / "data" / "train-00000-of-00001.parquet").write_bytes(b"corrupt")
    with pytest.raises(ChecksumError, match="train-00000-of-00001.parquet: md5 differs"):
        verify_checkout(tmp_path)
    (tmp_path / "release" / "index.json").unlink()
    with pytest.raises(ChecksumError, match="index.json: missing"):
        verify_checkout(tmp_path)


def test_registry_urls_with_embedded_tokens_are_refused():
    check_registry_url("/srv/registry.git")
    check_registry_url("git@git.example.com:data/registry.git")
    check_registry_url("https://git.example.com/data/registry.git")
    with pytest.raises(ReleaseError, match="embeds a password"):
        check_registry_url("https://bot:ghp_secret@git.example.com/data/registry.git")


def test_tool_env_passes_credentials_only_through_the_environment_and_fails_fast():
    creds = S3Credentials("http://127.0.0.1:1", "AKID", "SECRET")
    env = tool_env(creds, fail_fast=True, base={"PATH": "/usr/bin"})
    assert env["AWS_ACCESS_KEY_ID"] == "AKID" and env["AWS_SECRET_ACCESS_KEY"] == "SECRET"
    assert env["AWS_MAX_ATTEMPTS"] == "1" and env["DVC_NO_ANALYTICS"] == "1"
    assert env["PATH"].split(":")[0].endswith("bin") and "AWS_MAX_ATTEMPTS" not in tool_env(base={})
    assert "SECRET" not in repr(creds)


def test_run_tool_kills_a_hung_command_and_says_so(tmp_path):
    with pytest.raises(ToolError) as info:
        run_tool(["sleep", "30"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout_s=0.3, what="sleep")
    assert info.value.timed_out and info.value.elapsed_s < 5
    assert "gave no result within 0s" in str(info.value) or "within" in str(info.value)
    with pytest.raises(ToolError, match="exit 3"):
        run_tool(["sh", "-c", "echo boom >&2; exit 3"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout_s=5)


def test_cli_release_needs_its_inputs_and_has_the_stage_commands(capsys):
    from pipelines.cli import build_parser, main

    assert main(["release", "--consensus", "c.parquet"]) == 2
    assert "--questions" in capsys.readouterr().err
    args = build_parser().parse_args(["release", "build", "--data", "in", "--out", "out"])
    assert args.release_command == "build" and args.data == "in"
    args = build_parser().parse_args(["release", "verify", "somewhere"])
    assert args.dir == "somewhere"


def test_the_local_registry_stays_owner_only_whatever_the_pushers_umask(tmp_path: Path) -> None:
    """A release run from a CLI or a test process (umask 022) must not leave the registry's objects
    readable by others: git keeps them 0700/0400 (``--shared=0600``)."""
    import os
    import stat
    import subprocess

    from pipelines.release.registry import ensure_registry

    old = os.umask(0o022)
    try:
        reg = tmp_path / "registry.git"
        ensure_registry(str(reg))
        work = tmp_path / "work"
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        (work / "a").write_text("a")
        git = ["git", "-C", str(work), "-c", "user.email=a@b", "-c", "user.name=a"]
        subprocess.run([*git, "add", "a"], check=True)
        subprocess.run([*git, "commit", "-qm", "a"], check=True)
        subprocess.run([*git, "push", "-q", str(reg), "HEAD:refs/heads/main"], check=True)
    finally:
        os.umask(old)
    loose = [str(p) for p in [reg, *reg.rglob("*")] if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == []
