"""Add (or refresh) the sha256 hashes of every pin in the project's lock files, from PyPI.

Why: ``pip install --require-hashes`` refuses any artefact whose bytes differ from what was locked, so a
compromised index, mirror or cache cannot swap a package. The hashes come from the package index itself
(``uv pip compile --no-deps --generate-hashes`` against https://pypi.org/simple: every artefact of the
pinned release, all platforms, sdist included), never from what happens to be installed here.

One requirement per line (``name==version --hash=sha256:... --hash=sha256:...``), so the Dockerfile can
still split the lock with ``grep``. Comment lines and the order of the pins are kept.

``--local-wheels DIR``: a pin with a local version label (``torch==2.13.0+cpu``: the CPU build published on
download.pytorch.org, which this machine kind keeps in /opt/wheels) is not on PyPI; its hashes are those of
the matching wheels in DIR, and without one the tool stops. (A plain ``==2.13.0`` pin would not do: in
hash-checking mode pip prefers the index's candidates, whose hashes it knows in advance, over a local file.)

Usage (from the repository root; uv in any throwaway environment, never in the project's venvs)::

    python -m venv /tmp/uv && /tmp/uv/bin/pip install uv
    UV=/tmp/uv/bin/uv python scripts/lock_hashes.py requirements/*.lock requirements/lock.txt \\
        --local-wheels /opt/wheels
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INDEX = "https://pypi.org/simple"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def canonical(name: str) -> str:
    """PEP 503 name: the form a lock, an index and a wheel file name agree on."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_of(line: str) -> str:
    """A lock line without its hashes and trailing comment: what is handed to the resolver."""
    return HASH.sub("", line.split(" #", 1)[0]).strip()


def index_hashes(requirements: list[str], uv: str, index: str = INDEX) -> dict[str, list[str]]:
    """``{canonical name: [sha256, ...]}`` of every artefact of each pinned release on ``index``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        src.write_text("\n".join(requirements) + "\n")
        proc = subprocess.run(
            [uv, "pip", "compile", "--no-deps", "--generate-hashes", "--no-header", "--no-annotate",
             "--python-version", "3.11", "--index-url", index, "--no-config", str(src)],
            capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"lock-hashes: uv could not hash the pins: {proc.stderr.strip().splitlines()[-1:]}")
    out: dict[str, list[str]] = {}
    for entry in proc.stdout.replace("\\\n", " ").splitlines():
        pin = PIN.match(entry.strip())
        if pin:
            out[canonical(pin.group(1))] = HASH.findall(entry)
    return out


def local_wheel_hashes(dirs: list[Path], name: str, version: str) -> list[str]:
    """Hashes of the wheels on disk of exactly ``name==version`` (``torch``, ``2.13.0+cpu``)."""
    stem = canonical(name).replace("-", "_")
    found: list[str] = []
    for folder in dirs:
        for wheel in sorted(folder.glob("*.whl")):
            dist, _, rest = wheel.name.partition("-")
            if canonical(dist).replace("-", "_") == stem and rest.startswith(f"{version}-"):
                found.append(hashlib.sha256(wheel.read_bytes()).hexdigest())
    return found


def rewrite(text: str, hashes: dict[str, list[str]], local_dirs: list[Path]) -> str:
    """The lock ``text`` with each pin's hashes replaced by the index's (plus local builds')."""
    lines: list[str] = []
    for line in text.splitlines():
        pin = PIN.match(line)
        if not pin:
            lines.append(line)
            continue
        name, version = pin.groups()
        local = "+" in version
        digests = local_wheel_hashes(local_dirs, name, version) if local else hashes.get(canonical(name))
        if not digests:
            where = "in --local-wheels" if local else "on the index"
            raise SystemExit(f"lock-hashes: {name}=={version} has no artefact {where}")
        hash_args = " ".join(f"--hash=sha256:{h}" for h in digests)
        lines.append(f"{requirement_of(line)} {hash_args}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--local-wheels", action="append", type=Path, default=[],
                        help="folder of wheels this machine installs from disk (repeatable)")
    parser.add_argument("--index-url", default=INDEX)
    args = parser.parse_args(argv)
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise SystemExit("lock-hashes: uv not found (set UV=/path/to/uv; install it in a throwaway venv)")
    for lock in args.locks:
        text = lock.read_text()
        reqs = [requirement_of(line) for line in text.splitlines() if PIN.match(line) and "+" not in line.split()[0]]
        lock.write_text(rewrite(text, index_hashes(reqs, uv, args.index_url), args.local_wheels))
        print(f"{lock}: {len(reqs)} pins hashed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
