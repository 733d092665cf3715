"""The ``hopchain-demo`` command: ``run`` (the demo through the real Airflow scheduler) and
``samples`` (write the demo images with COCO instance annotations to a folder)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hopchain-demo", description="HopChain demo on the local stack")
    parser.add_argument("--params", default=None, help="params.yaml to use (default: the repository's)")
    parser.add_argument("--profile", default="demo", help="profile from params.yaml (default: demo)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="a nightly build through the real Airflow scheduler on the local stack")
    r.add_argument("--images", type=int, default=24, help="number of sample images to seed")
    r.add_argument("--timeout", type=float, default=840.0, help="seconds to wait for the release")
    r.set_defaults(handler=_run)

    s = sub.add_parser("samples", help="write the demo images with COCO instance annotations")
    s.add_argument("--out", required=True, help="folder for images/ and instances.json")
    s.add_argument("--count", type=int, default=24, help="number of images (default 24)")
    s.set_defaults(handler=_samples)
    return parser


def _run(args: argparse.Namespace) -> int:
    from hopchain_demo.run import run_demo
    from pipelines.config import load_params

    run_demo(load_params(args.params, args.profile), timeout_s=args.timeout, images=args.images)
    return 0


def _samples(args: argparse.Namespace) -> int:
    from hopchain_demo.samples import write_samples

    print(write_samples(args.out, count=args.count))
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import run_cli

    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
