"""Benchmark: pack and push a release of 10,000 questions over 2,000 images.

Starts a private SeaweedFS S3 server (free ports, state under bench/_work/release), generates
synthetic images with PIL, publishes a release into a fresh local registry (snapshot → ``dvc
repro`` → ``dvc push`` → verify → tag), then uploads the very same cache objects with plain boto3
(same concurrency) as the baseline. Prints one table: machine, sizes, file count, times, throughput,
and the push / boto3 ratio (target ≤ 2).

    .venv/bin/python bench/release.py [--images 2000] [--questions-per-image 5] [--sizes 160x120,320x240]

DVC's fixed cost per command (interpreter start, importing s3fs/aiobotocore, building the repo
index: ~1.5-2 s on a busy 2-core machine) is printed separately as the time of a no-op push; with
small images it dominates, so the bench runs a second, larger image size as well.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("OMP_NUM_THREADS", "1")




def boto3_upload(files: list[Path], creds, bucket: str, prefix: str, jobs: int) -> float:
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=creds.url, aws_access_key_id=creds.access_key,
                      aws_secret_access_key=creds.secret_key, region_name="us-east-1",
                      config=Config(signature_version="s3v4", max_pool_connections=jobs))
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda f: s3.upload_file(str(f), bucket, f"{prefix}/{f.parent.name}/{f.name}"), files))
    return time.monotonic() - start


def run_size(svc, params, creds, work: Path, n_images: int, per_image: int, width: int, height: int) -> list[tuple[str, str]]:
    """One release at one image size; returns the table rows."""
    from pipelines.release.dvc import dvc, tool_env
    from pipelines.release.registry import cached_objects, publish
    from pipelines.release.snapshot import ReleaseSources
    from pipelines.release.synthetic import make_inputs

    tag = f"{width}x{height}"
    rel = params.release.model_copy(update={"push_timeout_s": 600, "dvc_remote_prefix": f"bench-{tag}"})
    params = params.model_copy(update={"release": rel})
    t0 = time.monotonic()
    inputs = make_inputs(work / f"inputs-{tag}", n_images=n_images, questions_per_image=per_image,
                         seed=11, size=(width, height), accept_rate=1.0)
    gen_s = time.monotonic() - t0
    sources = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                             str(inputs.manifest))
    t0 = time.monotonic()
    result = publish(params, sources, creds=creds, workdir=work / f"release-work-{tag}",
                     registry_url=str(work / f"registry-{tag}.git"), day=dt.date.today())
    total_s = time.monotonic() - t0
    wc, cache = work / f"release-work-{tag}" / "checkout", work / f"release-work-{tag}" / "cache"
    noop_s = dvc("push", cwd=wc, env=tool_env(creds), timeout_s=600).elapsed_s  # nothing left to send
    objects = cached_objects(wc, cache)
    files = [cache / "files" / "md5" / m[:2] / m[2:] for m in objects]
    nbytes = sum(f.stat().st_size for f in files)
    release_files = [p for d in ("release", "data") for p in (wc / d).rglob("*") if p.is_file()]
    base_s = boto3_upload(files, creds, rel.dvc_remote_bucket, f"boto3-baseline-{tag}", rel.push_jobs)
    mb = nbytes / 1e6
    # a second night: 5% more images, appended as a new part
    more = make_inputs(work / f"inputs-{tag}-more", n_images=max(1, n_images // 20), questions_per_image=per_image,
                       seed=12, size=(width, height), accept_rate=1.0)
    remote = f"{rel.dvc_remote_prefix.strip('/')}/"
    before = {o.object_name: o.size for o in svc.client().list_objects(rel.dvc_remote_bucket, prefix=remote,
                                                                       recursive=True)}
    second = publish(params, ReleaseSources(str(more.consensus), str(more.questions), str(more.instances),
                                            str(more.manifest)),
                     creds=creds, workdir=work / f"release-work-{tag}", registry_url=str(work / f"registry-{tag}.git"),
                     day=dt.date.today())
    after = {o.object_name: o.size for o in svc.client().list_objects(rel.dvc_remote_bucket, prefix=remote,
                                                                      recursive=True)}
    sent = sum(size for key, size in after.items() if key not in before)
    objects2 = cached_objects(wc, cache)
    pull_new = sum((cache / "files" / "md5" / m[:2] / m[2:]).stat().st_size for m in objects2 if m not in objects)
    total2 = sum((cache / "files" / "md5" / m[:2] / m[2:]).stat().st_size for m in objects2)
    first_bytes = sum(before.values())
    return [
        ("image size (synthetic JPEG)", tag),
        ("questions / images", f"{result.metrics['released']['questions']} / {result.metrics['released']['images']}"),
        ("release files (data + meta + coco/chat/index)", f"{len(release_files)} ({result.metrics['released']['shards']} shards)"),
        ("objects pushed (data part + derived files)", f"{result.pushed_files} of {len(files)} tracked"),
        ("bytes pushed", f"{mb:.1f} MB"),
        ("generate inputs", f"{gen_s:.1f} s"),
        ("dvc repro (build + card)", f"{result.timings.get('repro_s', 0):.1f} s"),
        ("whole release (snapshot -> tag)", f"{total_s:.1f} s"),
        ("dvc push", f"{result.push_s:.2f} s ({mb / result.push_s:.1f} MB/s)"),
        ("  of which fixed cost (no-op dvc push)", f"{noop_s:.2f} s"),
        ("boto3 upload, same bytes, same concurrency", f"{base_s:.2f} s ({mb / base_s:.1f} MB/s)"),
        ("ratio dvc push / boto3 (target <= 2)", f"{result.push_s / base_s:.2f}"),
        ("second release: +5% images (new part)", f"{second.tag}: +{second.metrics['released']['questions'] - result.metrics['released']['questions']} questions"),
        ("  bytes dvc push sent / first release", f"{sent / 1e6:.2f} MB / {first_bytes / 1e6:.1f} MB = {sent / first_bytes:.1%} (target <= 10%)"),
        ("  trainer's dvc pull of the new tag on top of the old", f"{pull_new / 1e6:.2f} MB of {total2 / 1e6:.1f} MB = {pull_new / total2:.1%} (target <= 10%)"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--questions-per-image", type=int, default=5)
    parser.add_argument("--sizes", default="160x120,320x240", help="image sizes WxH, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep bench/_work/release afterwards")
    args = parser.parse_args()

    from pipelines.store import S3Credentials
    from tests.support.stack import running_s3_server

    work = REPO / "bench" / "_work" / "release"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tables = []
    try:
        with running_s3_server(work / "s3home") as svc:
            c = svc.credentials()
            creds = S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])
            for size in args.sizes.split(","):
                width, height = (int(v) for v in size.split("x"))
                tables.append(run_size(svc, svc.params, creds, work, args.images, args.questions_per_image,
                                       width, height))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nrelease bench — machine: {cpu_model()}, {os.cpu_count()} cores")
    for rows in tables:
        width_col = max(len(k) for k, _ in rows)
        print()
        for k, v in rows:
            print(f"  {k:<{width_col}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
