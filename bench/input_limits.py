"""Resident memory of ingesting an over-size image file (issue 30 item 2: bytes refused before reading).

    OMP_NUM_THREADS=1 .venv/bin/python bench/input_limits.py [--mb 200] [--code /path/to/other/checkout] [--json out.json]

Writes, in a temporary folder (nothing is committed), a folder with one small valid PNG and one JPEG of
``--mb`` MB (a real JPEG header followed by filler, on disk, not sparse), then runs ``ingest_shard`` over
it with the default ``ingest.max_bytes`` (50 MB) in a fresh process per checkout, and reports that
process's peak resident memory (``ru_maxrss``) next to the peak of the same process doing everything but
the ingest call (imports, listing): the difference is what ingesting the over-size file cost. ``--code``
measures another checkout (e.g. the main branch before the fix) the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024

_CHILD = r"""
import json, resource, sys
from pipelines.config import IngestConfig
from pipelines.ingest.sources import ImageSource
from pipelines.ingest.stage import ingest_shard
folder, run = sys.argv[1], sys.argv[2] == "1"
uris = ImageSource().list(folder, IngestConfig().extensions)
out = {"listed": len(uris)}
if run:
    res = ingest_shard(IngestConfig(), folder, 0)
    out["quarantine"] = res.quarantine.to_pylist()
    out["images"] = res.manifest.num_rows
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def write_inputs(folder: Path, mb: int) -> None:
    """One 16x16 PNG and one ``mb`` MB JPEG (valid header, filler after it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "PNG")
    (folder / "a_small.png").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "JPEG")
    block = os.urandom(MB)
    with open(folder / "b_huge.jpg", "wb") as fh:
        fh.write(buf.getvalue())
        for _ in range(mb):
            fh.write(block)


def measure(code: Path, folder: Path, run: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), "1" if run else "0"], env=env, cwd=code,
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--code", action="append", default=[], help="another checkout to measure (repeatable)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hopchain-input-limits-") as tmp:
        folder = Path(tmp)
        write_inputs(folder, args.mb)
        size = (folder / "b_huge.jpg").stat().st_size
        for code in [REPO, *map(Path, args.code)]:
            idle = measure(code, folder, run=False)
            ran = measure(code, folder, run=True)
            codes = [q["code"] for q in ran["quarantine"]]
            rows.append({"code": str(code), "file_mb": round(size / MB, 1), "images": ran["images"],
                         "quarantine": codes, "peak_rss_mb": round(ran["peak_rss_mb"], 1),
                         "without_ingest_mb": round(idle["peak_rss_mb"], 1),
                         "ingest_cost_mb": round(ran["peak_rss_mb"] - idle["peak_rss_mb"], 1)})
    print("| checkout | file | images kept | quarantine code | peak RSS | of which ingest |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['code']} | {r['file_mb']} MB | {r['images']} | {', '.join(r['quarantine'])} | "
              f"{r['peak_rss_mb']} MB | {r['ingest_cost_mb']} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
