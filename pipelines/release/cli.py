"""``hopchain release``: publish a dataset release outside Airflow, and the DVC stage commands.

* ``hopchain release --consensus F --questions F --instances F --manifest F [--images-from s3|DIR]
  [--withdraw-image ID ...]`` appends what is new to the registry's ``data/`` as one part, runs
  ``dvc repro``, pushes, verifies, tags, and prints the tag (last line of stdout).
* ``hopchain release --compact`` publishes a rewrite of every shard into one part (a full upload,
  on purpose: e.g. after many withdrawals).
* ``hopchain release build|card ...`` — the ``dvc.yaml`` stages (same as ``python -m
  pipelines.release.build|card``).
* ``hopchain release verify [DIR]`` — recompute the md5 of every pulled data file of a registry
  checkout against ``dvc.lock``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any


def _creds(args: argparse.Namespace, home: Path) -> Any:
    from pipelines.release.registry import ReleaseError
    from pipelines.store import S3Credentials

    if args.s3_credentials:
        return S3Credentials.from_file(args.s3_credentials)
    env = S3Credentials.from_env()
    if env is not None:
        return env
    stack_file = home / "credentials" / "s3.json"
    if stack_file.exists():
        return S3Credentials.from_file(stack_file)
    raise ReleaseError("no object-store credentials: set HOPCHAIN_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY, "
                       "pass --s3-credentials FILE, or start the local stack")


def _publish(args: argparse.Namespace) -> int:
    from pipelines.config import load_params, work_home
    from pipelines.release.dvc import ToolError
    from pipelines.release.registry import ReleaseError, default_registry_url, publish
    from pipelines.release.snapshot import ReleaseSources, SnapshotError

    missing = [f"--{n}" for n in ("consensus", "questions", "instances", "manifest") if not getattr(args, n)]
    if missing and not args.compact:
        print(f"error: hopchain release needs {', '.join(missing)}", file=sys.stderr)
        return 2
    local = [(f"--{n}", getattr(args, n)) for n in ("consensus", "questions", "instances", "manifest")]
    local.append(("--images-from", args.images_from if args.images_from not in (None, "s3") else None))
    absent = [f"{flag} {value}" for flag, value in local
              if value and not str(value).startswith("s3://") and not Path(value).exists()]
    if absent:
        print(f"error: hopchain release: no such file or folder: {', '.join(absent)} (check the path)",
              file=sys.stderr)
        return 2
    params = load_params(args.params, args.profile)
    home = work_home(params)
    sources = ReleaseSources(args.consensus or "", args.questions or "", args.instances or "", args.manifest or "",
                             images_from=args.images_from, run_ids=tuple(args.run_id or ()))
    try:
        result = publish(
            params, sources, creds=_creds(args, home),
            workdir=Path(args.workdir or home / "release" / params.release.name),
            registry_url=args.registry or default_registry_url(params, home),
            day=dt.date.fromisoformat(args.date) if args.date else None,
            withdraw_images=tuple(args.withdraw_image or ()), compact=args.compact,
            progress=lambda m: print(m, file=sys.stderr),
        )
    except (ReleaseError, SnapshotError, ToolError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result.notes:
        print(result.notes, file=sys.stderr)
    print(result.tag)
    return 0


def _build(args: argparse.Namespace) -> int:
    from pipelines.release import build

    return build.main(["--params", args.stage_params, "--data", args.data, "--out", args.out])


def _card(args: argparse.Namespace) -> int:
    from pipelines.release import card

    return card.main(["--params", args.stage_params, "--data", args.data, "--release", args.release,
                      "--out", args.out, "--metrics", args.metrics])


def _verify(args: argparse.Namespace) -> int:
    from pipelines.release.registry import ChecksumError, verify_checkout

    try:
        n = verify_checkout(Path(args.dir))
    except ChecksumError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{n} files match dvc.lock")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("release", help="publish a versioned dataset release (DVC registry tag)",
                              description=__doc__.split("\n")[0])
    for name in ("consensus", "questions", "instances", "manifest"):
        p.add_argument(f"--{name}", help=f"{name} table: Parquet file, folder of shards or s3:// URI")
    p.add_argument("--images-from", default=None,
                   help="'s3' (object store) or a local folder; default: the manifest uri")
    p.add_argument("--run-id", action="append", help="source run id (repeatable; also read from runs/<id>/ paths)")
    p.add_argument("--registry", default=None, help="dataset registry git URL (default: <stack home>/registry.git)")
    p.add_argument("--workdir", default=None, help="release work folder (default: <stack home>/release/<name>)")
    p.add_argument("--s3-credentials", default=None, help="JSON file with endpoint/access_key/secret_key")
    p.add_argument("--date", default=None, help="release date YYYY-MM-DD for the tag (default: today)")
    p.add_argument("--withdraw-image", action="append", metavar="IMAGE_ID",
                   help="withdraw the released questions of this image (repeatable)")
    p.add_argument("--compact", action="store_true", help="rewrite every shard into one new part (full upload)")
    p.set_defaults(handler=_publish)
    sub = p.add_subparsers(dest="release_command", metavar="STAGE")
    b = sub.add_parser("build", help="dvc stage: data folder -> derived release files (coco, chat, index)")
    b.add_argument("--params", dest="stage_params", default="params.yaml")
    b.add_argument("--data", default="data")
    b.add_argument("--out", default="release")
    b.set_defaults(handler=_build)
    c = sub.add_parser("card", help="dvc stage: metrics.json + dataset card")
    c.add_argument("--params", dest="stage_params", default="params.yaml")
    c.add_argument("--data", default="data")
    c.add_argument("--release", default="release")
    c.add_argument("--out", default="card")
    c.add_argument("--metrics", default="metrics.json")
    c.set_defaults(handler=_card)
    v = sub.add_parser("verify", help="check pulled release files against dvc.lock (md5)")
    v.add_argument("dir", nargs="?", default=".")
    v.set_defaults(handler=_verify)
