"""Running ``dvc`` and ``git`` as subprocesses: timeouts, clean environment, clear errors.

DVC is driven through its command line (``<venv>/bin/dvc``), never its Python internals. Every
call runs in its own process group with a timeout; on timeout the whole group is killed. The
environment carries ``DVC_NO_ANALYTICS=1`` and the S3 credentials (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``) — credentials are never written to a file in the working copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.store import S3Credentials

VENV_BIN = Path(sys.executable).parent
DVC_BIN = VENV_BIN / "dvc"
GIT_IDENTITY = ("-c", "user.name=HopChain release", "-c", "user.email=release@hopchain.invalid")


class ToolError(RuntimeError):
    """A ``dvc``/``git`` command failed or timed out; the message says which and why."""

    def __init__(self, message: str, *, stderr: str = "", timed_out: bool = False, elapsed_s: float = 0.0):
        super().__init__(message)
        self.stderr = stderr
        self.timed_out = timed_out
        self.elapsed_s = elapsed_s


@dataclass(frozen=True)
class ToolResult:
    stdout: str
    stderr: str
    elapsed_s: float


def tool_env(creds: S3Credentials | None = None, *, fail_fast: bool = False,
             base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``dvc``/``git``: venv first on PATH, no analytics, no prompts.

    ``creds`` become ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (otherwise whatever the
    caller's environment or ``.dvc/config.local`` provides is used). ``fail_fast`` sets
    ``AWS_MAX_ATTEMPTS=1`` so a dead object store fails a transfer at once instead of after
    minutes of per-file botocore retries.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if creds is not None:
        env["AWS_ACCESS_KEY_ID"] = creds.access_key
        env["AWS_SECRET_ACCESS_KEY"] = creds.secret_key
        env.setdefault("AWS_DEFAULT_REGION", creds.region)
    if fail_fast:
        env["AWS_MAX_ATTEMPTS"] = "1"
        env["AWS_RETRY_MODE"] = "standard"
    return env


def run_tool(args: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout_s: float,
             what: str | None = None) -> ToolResult:
    """Run a command; raise :class:`ToolError` (with the stderr tail) on failure or timeout."""
    what = what or " ".join(Path(args[0]).name if i == 0 else a for i, a in enumerate(args[:3]))
    start = time.monotonic()
    proc = subprocess.Popen(list(args), cwd=str(cwd) if cwd else None, env=dict(env), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created: dvc and its workers
        out, err = proc.communicate()
        elapsed = time.monotonic() - start
        raise ToolError(f"`{what}` gave no result within {timeout_s:.0f}s and was stopped",
                        stderr=err or "", timed_out=True, elapsed_s=elapsed) from None
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        tail = "\n".join((err or out or "").strip().splitlines()[-12:])
        raise ToolError(f"`{what}` failed (exit {proc.returncode}):\n{tail}", stderr=err or "",
                        elapsed_s=elapsed)
    return ToolResult(out or "", err or "", elapsed)


def dvc(*args: str, cwd: Path, env: Mapping[str, str], timeout_s: float = 300) -> ToolResult:
    return run_tool([str(DVC_BIN), *args], cwd=cwd, env=env, timeout_s=timeout_s, what=f"dvc {' '.join(args[:2])}")


def git(*args: str, cwd: Path | None, env: Mapping[str, str] | None = None, timeout_s: float = 120) -> ToolResult:
    return run_tool(["git", *GIT_IDENTITY, *args], cwd=cwd, env=env or tool_env(), timeout_s=timeout_s,
                    what=f"git {' '.join(args[:2])}")
