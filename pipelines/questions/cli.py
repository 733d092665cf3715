"""``hopchain questions --instances FILE --manifest FILE --out FILE [--seed N] [--per-image N]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "questions",
        help="generate verified multi-hop questions from instances (Parquet in, Parquet out)",
        description="Reads the contract's instances and manifest Parquet files and writes the questions "
        "table; every refused instance, output or question goes to the rejects table with its reason.",
    )
    p.add_argument("--instances", required=True, help="instances Parquet file (contract: instances)")
    p.add_argument("--manifest", required=True, help="manifest Parquet file (contract: manifest)")
    p.add_argument("--out", required=True, help="questions Parquet file to write (atomically)")
    p.add_argument("--rejects", default=None, help="rejects Parquet file (default: <out>.rejects.parquet)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: questions.seed)")
    p.add_argument(
        "--per-image", type=int, default=None, help="questions per image (default: questions.per_image)"
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated variants: full,half,single (default: questions.variants)",
    )
    p.set_defaults(handler=_questions)


def _working(text: str):
    """A spinner with the elapsed time on a terminal (the stage reports no per-image progress);
    nothing elsewhere."""
    import contextlib

    from pipelines.progress import interactive

    if not interactive():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(f"{text} …")


def _questions(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipelines.config import load_params
    from pipelines.contracts import read_parquet, write_parquet_atomic
    from pipelines.questions.stage import run_questions

    params = load_params(args.params, args.profile)
    update: dict = {}
    if args.seed is not None:
        update["seed"] = args.seed
    if args.per_image is not None:
        update["per_image"] = args.per_image
    if args.variants:
        update["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    cfg = params.questions.model_validate({**params.questions.model_dump(), **update})
    # inputs first: a missing or broken table fails in a second, before any model is loaded
    instances, manifest = read_parquet(args.instances, "instances"), read_parquet(args.manifest, "manifest")
    backend = None
    if cfg.writer == "vlm" or cfg.difficulty.enabled:
        # The VLM writer and the difficulty solver share the platform's VLM (params.vlm),
        # loaded once here.
        from pipelines.vlm.backends import make_vlm_backend

        backend = make_vlm_backend(params.vlm)
        backend.setup()
    try:
        with _working(f"questions for {manifest.num_rows} images"):
            result = run_questions(instances, manifest, cfg, writer_backend=backend, solver_backend=backend)
    finally:
        if backend is not None:
            backend.teardown()
    out = write_parquet_atomic(result.questions, args.out)
    rejects = (
        Path(args.rejects)
        if args.rejects
        else out.with_name(out.name.removesuffix(".parquet") + ".rejects.parquet")
    )
    write_parquet_atomic(result.rejects, rejects)
    print(json.dumps({"questions": str(out), "rejects": str(rejects), **result.stats}, indent=2, default=str))
    return 0
