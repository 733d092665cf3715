"""``hopchain questions --root ROOT [--shard N]`` (a run root, as the DAGs lay runs out) or
``hopchain questions --instances FILE --manifest FILE --out FILE`` (single files); ``--seed``,
``--per-image``, ``--variants`` override ``questions.*``. Both run
:class:`pipelines.questions.stage.QuestionsStage` through the runner."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "questions",
        help="generate verified multi-hop questions from instances (Parquet in, Parquet out)",
        description="Reads the contract's instances and manifest tables and writes the questions table; every "
        "refused instance, output or question goes to the rejects table with its reason. Either --root (every "
        "shard of a run root, or --shard) or the three files --instances, --manifest, --out.",
    )
    p.add_argument("--root", default=None, help="run root holding manifest/ and instances/ (folder or s3://…)")
    p.add_argument("--shard", type=int, default=None, help="with --root: only this shard (default: all)")
    p.add_argument("--instances", default=None, help="instances Parquet file (contract: instances)")
    p.add_argument("--manifest", default=None, help="manifest Parquet file (contract: manifest)")
    p.add_argument("--out", default=None, help="questions Parquet file to write (atomically)")
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
    from pipelines.cli import add_run_options

    add_run_options(p)
    p.set_defaults(handler=_questions)


def _working(text: str):
    """A spinner with the elapsed time on a terminal (the stage reports no per-image progress);
    nothing elsewhere."""
    import contextlib

    from pipelines.runner.progress import interactive

    if not interactive():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(f"{text} …")


def _questions(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipelines.cli import InputError, root_shards, stage_runner
    from pipelines.config import load_params
    from pipelines.contracts import read_parquet, write_parquet_atomic
    from pipelines.questions.stage import QuestionsStage
    from pipelines.runner import RunEnv, Runner
    from pipelines.store import FolderStore

    files = (args.instances, args.manifest, args.out)
    if (args.root is None) == all(f is None for f in files) or (args.root is None and None in files):
        raise InputError("questions", "give --root, or all of --instances, --manifest and --out",
                         "see hopchain questions --help")
    params = load_params(args.params, args.profile)
    update: dict = {}
    if args.seed is not None:
        update["seed"] = args.seed
    if args.per_image is not None:
        update["per_image"] = args.per_image
    if args.variants:
        update["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    stage = QuestionsStage(params.questions.model_validate({**params.questions.model_dump(), **update}))
    if args.root is not None:
        runner = stage_runner(args, args.root)
        shards = root_shards(runner, args.shard)
        with _working(f"questions for {len(shards)} shards"):
            run = runner.run(stage, shards)
        print(json.dumps({"shards": run.shards, **run.totals}))
        return 0
    # inputs first: a missing or broken table fails in a second, before any model is loaded
    instances, manifest = read_parquet(args.instances, "instances"), read_parquet(args.manifest, "manifest")
    out = Path(args.out)
    runner = Runner(RunEnv(params, FolderStore(out.resolve().parent), "questions"), checks=False)
    with _working(f"questions for {manifest.num_rows} images"):
        result = runner.apply(stage, {"instances": instances, "manifest": manifest})
    write_parquet_atomic(result.tables["questions"], out)
    rejects = (
        Path(args.rejects)
        if args.rejects
        else out.with_name(out.name.removesuffix(".parquet") + ".rejects.parquet")
    )
    assert result.rejects is not None
    write_parquet_atomic(result.rejects, rejects)
    detail = (result.stats or {}).get("detail", {})
    print(json.dumps({"questions": str(out), "rejects": str(rejects), **detail}, indent=2, default=str))
    return 0
