"""Atomic writes on the local filesystem: a reader sees the old file (or folder) or the new one,
never a half-written one, and a failed write leaves the old one in place.

Both write beside the target (same folder, so the final rename stays on one filesystem):
:func:`write_atomic` for one file, :func:`replacing_folder` for a folder built in full first.
Writes to the object store are atomic already (one PUT per object); these are for local paths.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str, *, mode: int = 0o666) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through a temporary file beside it, renamed
    over ``path``; the parent folders are created. ``mode`` is the permission the file is created
    with (less the umask): ``0o600`` for secrets, which are then never readable by others, not
    even briefly. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def replacing_folder(out: str | Path) -> Iterator[Path]:
    """Build a folder that replaces ``out`` when the ``with`` block ends without an error.

    Yields an empty folder beside ``out`` (``.<name>.building``) to fill. On success the old
    ``out`` is renamed aside, the new folder renamed to ``out`` and the old one removed, so ``out``
    is missing only between two renames. On an error the new folder is removed and ``out`` is
    left as it was.
    """
    out = Path(out)
    building = out.with_name(f".{out.name}.building")
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.replace(old)
    building.replace(out)
    shutil.rmtree(old, ignore_errors=True)
