"""Managed background processes: started in their own session, recorded by pid, stopped by pid.

A pid file holds ``{"pid", "create_time", "cmd"}``; the process-creation time guards against
pid reuse, so a stale pid file never makes us signal an unrelated program. Stopping sends
SIGTERM (or SIGINT) to the process *group* we created (whose id is the recorded pid), waits, and
escalates to SIGKILL. Nothing is ever looked up or killed by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipelines.contracts.files import write_atomic


class StackError(RuntimeError):
    """A clear, user-facing failure of the local stack (busy port, failed health check, ...)."""


#: The umask of every process the stack starts: what they create (Label Studio's database, Airflow's
#: config, database and task logs, SeaweedFS's volumes) is the owner's only, 0600 files in 0700 folders.
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (0700), with any missing parents made the same way;
    an existing one is repaired."""
    path = Path(path)
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def make_private(root: Path) -> list[Path]:
    """Repair ``root`` and everything under it: folders 0700, files without any group or other
    permission (0600, or 0700 for executables). Symlinks are left alone (never followed). Returns what
    was changed: a stack home made by an older version, or copied with a loose umask, is fixed on start."""
    changed: list[Path] = []

    def fix(path: Path, want: int) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_IMODE(st.st_mode) != want:
            os.chmod(path, want)
            changed.append(path)

    root = Path(root)
    if not root.exists():
        return changed
    fix(root, 0o700)
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            fix(Path(folder) / d, 0o700)
        for f in files:
            p = Path(folder) / f
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                fix(p, stat.S_IMODE(st.st_mode) & 0o700 | 0o600)
    return changed


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    # Also refuse a port bound on the wildcard address by another program.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - health probes raise while a server is still starting
            last_exc = exc
        time.sleep(interval_s)
    detail = f" (last error: {last_exc})" if last_exc else ""
    raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what or 'condition'}{detail}")


@dataclass
class ManagedProcess:
    """One long-running process of the stack, tracked through ``<home>/run/<name>.pid``."""

    name: str
    home: Path
    stop_signal: int = signal.SIGTERM
    # what this object started (pid, create time), kept in memory too: a pid file deleted under a running
    # process (its folder cleaned while the stack runs) must not leave the process unstoppable
    _started: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def _record(self) -> dict | None:
        try:
            return json.loads(self.pid_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return self._started

    def process(self) -> psutil.Process | None:
        """The live process this pid file names, or None (stale files are ignored)."""
        rec = self._record()
        if not rec:
            return None
        try:
            proc = psutil.Process(int(rec["pid"]))
            if abs(proc.create_time() - float(rec["create_time"])) > 1.0:
                return None  # pid reused by an unrelated program
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
            return None

    @property
    def pid(self) -> int | None:
        proc = self.process()
        return proc.pid if proc else None

    def running(self) -> bool:
        return self.process() is not None

    def start(self, cmd: list[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
        if self.running():
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        private_dir(self.pid_file.parent)
        private_dir(self.log_file.parent)
        log = os.fdopen(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        try:
            proc = subprocess.Popen(
                cmd,
                env=dict(env),
                cwd=str(cwd) if cwd else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: pgid == pid, so we stop the whole tree
                umask=PRIVATE_UMASK,
            )
        finally:
            log.close()
        create_time = psutil.Process(proc.pid).create_time()
        self._started = {"pid": proc.pid, "create_time": create_time, "cmd": cmd[:3]}
        write_atomic(self.pid_file, json.dumps(self._started), mode=0o600)
        return proc.pid

    def exited_early(self) -> str | None:
        """If the process died, the tail of its log (for a clear error)."""
        if self.running():
            return None
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-15:]
        except FileNotFoundError:
            tail = []
        return "\n".join(tail)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process group by recorded pid. Returns True if something was stopped."""
        proc = self.process()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        pid = proc.pid
        members = _group_members(pid)
        # Signal the leader first so it can shut its own children down in order; then the group.
        try:
            proc.send_signal(self.stop_signal)
        except psutil.NoSuchProcess:
            pass
        _, alive = psutil.wait_procs(members, timeout=timeout_s / 2)
        if alive:
            try:
                os.killpg(pid, self.stop_signal)
            except (ProcessLookupError, PermissionError):
                pass
            _, alive = psutil.wait_procs(alive, timeout=timeout_s / 2)
        if alive:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for p in alive:  # children that left the group are still ours: kill them by pid
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=10)
        self.pid_file.unlink(missing_ok=True)
        return True


def _group_members(pid: int) -> list[psutil.Process]:
    """The recorded process and all its descendants (they share its process group)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listening_ports(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket owned by ``pids`` or their descendants."""
    out: list[tuple[int, str, int]] = []
    seen: set[int] = set()
    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                conns = p.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.pid, c.laddr.ip, c.laddr.port))
    return out
