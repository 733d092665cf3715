"""The stage contract and the one runner that both the Airflow tasks and the ``hopchain`` command call.

A **stage** (:class:`Stage`) declares what it reads, writes, rejects and reports, and has a life cycle
(NeMo Curator's, datatrove's)::

    name     "detect"                      the stage's name: its stats and rejects keys
    inputs   ("manifest",)                 tables it reads per shard (contract names, pipelines.contracts)
    outputs  ("detections",)               tables it writes per shard
    rejects  ("answer", "item", "image")   the families of the reject codes it may write (``answer.unparseable``)
    metrics  ("images", "detections", …)   the counters its stats carry
    checks   (Check("instances", …),)      Great Expectations suites run on its tables before anyone reads them

    setup(env)  →  process(shard) per shard  →  teardown()

``process`` gets one :class:`Shard` (its number and its input tables, read and conformed to their
contracts) and returns one :class:`ShardResult` (output tables, a ``rejects`` table, stats). It never
reads or writes the store itself and never knows which runner runs it; ``setup`` gets the
:class:`RunEnv` (configuration, image source, store) to load models and configuration once.

A **source stage** (:class:`SourceStage`: ingest) has no input tables: after ``setup`` it ``plan()``s
the raw items of every shard, ``merge``s the results across shards (duplicates), and its ``record`` is
written as the run's plan.

The **runner** (:class:`Runner`) does the rest for every stage alike: reads the inputs by contract,
runs the life cycle, writes each output, the rejects and the stats with one atomic put each (a retried
task overwrites only its own shard's keys; ``resume`` skips shards whose stats, written last, exist),
runs the stage's checks, and returns a JSON-able :class:`StageRun`. Keys come from
:class:`pipelines.store.ledger.RunKeys`, the same for the object store (Airflow) and a local folder
(:class:`pipelines.store.FolderStore`, the command's local mode): one layout.

What is not shard-shaped is a plain function of the :class:`RunEnv`: the Label Studio push of one shard,
the annotation tending and decisions (:mod:`pipelines.annotation.tasks`), the release
(:mod:`pipelines.release.platform`), and the run summary (:func:`summarize`).
"""

from __future__ import annotations

import importlib
import logging
import posixpath
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel

from pipelines.config import ConfigError, Params
from pipelines.contracts import SCHEMAS
from pipelines.store import FolderStore, ObjectStore, S3Credentials
from pipelines.store.layout import is_segment, shard_label, shard_of
from pipelines.store.ledger import Ledger, RunKeys, RunSummary, utc_now

if TYPE_CHECKING:
    from pipelines.ingest.sources import ImageSource

log = logging.getLogger(__name__)

__all__ = [
    "Check", "RunEnv", "Runner", "Shard", "ShardResult", "SourceStage", "Stage", "StageBase", "StageRun",
    "open_root", "resolve", "summarize", "validate",
]


# -- the contract ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A Great Expectations suite run on one table of a shard, joined against other tables of the
    same shard (``references``: their contract names, e.g. ``("manifest",)``)."""

    suite: str
    table: str
    references: tuple[str, ...] = ()


@dataclass
class Shard:
    """What ``process`` gets: the shard number, the stage's input tables (conformed to their contracts)
    and, for a source stage, the raw items the plan gave this shard (ingest: image uris)."""

    number: int
    tables: dict[str, pa.Table] = field(default_factory=dict)
    items: Sequence[str] = ()


@dataclass
class ShardResult:
    """What ``process`` returns: one table per declared output, the refused items (a ``rejects``
    contract table; None for a stage that refuses nothing) and the shard's stats (None: none kept).
    ``documents``: JSON documents of this shard for later stages (name → document, written at
    :meth:`RunKeys.shard_document`), e.g. ingest's slice of the COCO instances shipped with the images, so
    a later shard reads its own slice, not the whole night's file."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: pa.Table | None = None
    stats: dict[str, Any] | None = None
    documents: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stage(Protocol):
    """One stage of the platform (see the module docstring). The declarations are plain class attributes
    (read-only here); :class:`StageBase` gives the defaults."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def outputs(self) -> tuple[str, ...]: ...

    @property
    def rejects(self) -> tuple[str, ...]: ...

    @property
    def metrics(self) -> tuple[str, ...]: ...

    @property
    def checks(self) -> tuple[Check, ...]: ...

    def setup(self, env: RunEnv) -> None: ...

    def process(self, shard: Shard) -> ShardResult: ...

    def teardown(self) -> None: ...


@runtime_checkable
class SourceStage(Stage, Protocol):
    """A stage that makes the shards (ingest): no input tables; its items come from ``plan``."""

    def plan(self) -> dict[int, list[str]]:
        """Shard number → its raw items (after ``setup``)."""
        ...

    def merge(self, results: dict[int, ShardResult]) -> dict[int, ShardResult]:
        """The results of the shards of one call, reconciled across shards (e.g. duplicates)."""
        ...

    def record(self, results: dict[int, ShardResult]) -> dict[str, Any]:
        """What the run's plan records (``RunKeys.plan()``) after a whole run."""
        ...


class StageBase:
    """Defaults for a stage: nothing read, written, refused or checked; no-op ``setup``/``teardown``.
    Subclasses set the class attributes and implement ``process``."""

    name: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    rejects: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()

    def setup(self, env: RunEnv) -> None:
        return None

    def process(self, shard: Shard) -> ShardResult:
        raise NotImplementedError

    def teardown(self) -> None:
        return None


class StageRun(BaseModel):
    """What one runner call did (JSON for XCom and the command's output).

    ``shards``: the shards processed (a source stage: those whose first output has rows, what the DAG
    maps over); ``totals``: numeric stats summed over them; ``stats``: each shard's stats; ``checks``:
    each check label's validation summary; ``resumed``: shards skipped because their stats existed."""

    stage: str
    shards: list[int] = []
    totals: dict[str, float] = {}
    stats: dict[int, dict[str, Any]] = {}
    checks: dict[str, Any] = {}
    resumed: list[int] = []


# -- the run's environment ---------------------------------------------------------------------------
@dataclass
class RunEnv:
    """One run: configuration, the store its keys live in, the run id, and the services a task may use.

    ``label_studio`` is a factory returning a Label Studio client used as a context manager
    (:class:`pipelines.annotation.client.LabelStudioClient`). ``image_reader`` returns a read-only key of
    the bucket that Label Studio's image storage signs image URLs with (the push only).
    """

    params: Params
    store: ObjectStore
    run_id: str
    label_studio: Callable[[], AbstractContextManager[Any]] | None = None
    s3_credentials: S3Credentials | None = None
    image_reader: Callable[[], S3Credentials | None] | None = None

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.store, self.params.store)

    @property
    def keys(self) -> RunKeys:
        return self.ledger.run(self.run_id)

    @cached_property
    def images(self) -> ImageSource:
        """Reads input images by uri (local paths, or ``s3://`` with the run's credentials)."""
        from pipelines.ingest.sources import ImageSource

        return ImageSource(self.s3_credentials or getattr(self.store, "creds", None))

    def client(self) -> AbstractContextManager[Any]:
        if self.label_studio is None:
            raise RuntimeError("this run has no Label Studio connection")
        return self.label_studio()

    def input_uri(self, input_prefix: str) -> str:
        """``s3://<bucket>/<inputs>/<input_prefix>``: a folder of the platform bucket's inputs (never outside)."""
        return self.ledger.keys.input_uri(self.store.bucket, input_prefix)

    # -- run tables ----------------------------------------------------------------------------------
    def read_table(self, name: str, shard: int) -> pa.Table:
        """Shard ``shard`` of table ``name``, conformed to its contract."""
        return self.store.get_table(self.keys.table(name, shard), name if name in SCHEMAS else None)

    def write_table(self, name: str, shard: int, table: pa.Table) -> str:
        """Write shard ``shard`` of table ``name`` (conformed to its contract), one atomic put."""
        return self.store.put_table(self.keys.table(name, shard), table, name if name in SCHEMAS else None)

    def read_rejects(self, stage: str, shard: int | None = None) -> pa.Table:
        """The rejects stage ``stage`` wrote for ``shard`` (None: every shard, in shard order)."""
        if shard is not None:
            return self.store.get_table(self.keys.rejects(stage, shard), "rejects")
        from pipelines.contracts import empty_table

        keys = [self.keys.rejects(stage, n) for n in self._shards(self.keys.rejects(stage, 0))]
        tables = [self.store.get_table(k, "rejects") for k in keys]
        return pa.concat_tables(tables) if tables else empty_table("rejects")

    def shard_numbers(self, name: str) -> list[int]:
        """The shards of table ``name`` present in the store, ascending."""
        return self._shards(self.keys.table(name, 0))

    def _shards(self, first: str) -> list[int]:
        """Shard numbers of the keys beside ``first`` (the key of shard 0)."""
        prefix = posixpath.dirname(first) + "/"
        found = {shard_of(k) for k in self.store.list(prefix, recursive=False) if k.endswith(".parquet")}
        return sorted(n for n in found if n is not None)

    def read_all(self, name: str) -> pa.Table:
        """Every shard of table ``name``, in shard order (an empty contract table when there is none)."""
        from pipelines.contracts import conform, empty_table

        tables = [self.read_table(name, n) for n in self.shard_numbers(name)]
        if not tables:
            return empty_table(name) if name in SCHEMAS else pa.table({})
        table = pa.concat_tables(tables)
        return conform(table, name) if name in SCHEMAS else table

    def where(self, name: str) -> str:
        """Where the shards of table ``name`` live, for messages (a folder, or ``s3://bucket/prefix``)."""
        prefix = posixpath.dirname(self.keys.table(name, 0))
        if isinstance(self.store, FolderStore):
            return str(self.store.root / prefix)
        return f"s3://{self.store.bucket}/{prefix}"


def open_root(root: str, params: Params) -> RunEnv:
    """The run whose folder is ``root``: a local folder or ``s3://bucket/<runs prefix>/<run id>``.

    A run root is a run's prefix in the one layout: ``s3://<bucket>/runs/<run_id>`` is the run a DAG
    wrote, and a local folder ``<parent>/<name>`` is the run ``<name>`` of a :class:`FolderStore` on
    ``<parent>`` (so the folder holds exactly the keys the bucket would). ``s3://`` needs
    ``HOPCHAIN_S3_*`` in the environment."""
    if root.startswith("s3://"):
        bucket, _, key = root.removeprefix("s3://").partition("/")
        runs_prefix, _, run_id = key.strip("/").rpartition("/")
        creds = S3Credentials.from_env()
        if creds is None:
            raise ConfigError(f"{root}: an s3:// run root needs credentials (set HOPCHAIN_S3_ENDPOINT, "
                              "HOPCHAIN_S3_ACCESS_KEY, HOPCHAIN_S3_SECRET_KEY)")
        store: ObjectStore = ObjectStore(creds, bucket)
    else:
        path = Path(root).resolve()
        runs_prefix, run_id, bucket = "", path.name, ""
        store = FolderStore(path.parent)
    if (root.startswith("s3://") and not bucket) or not run_id or not is_segment(run_id):
        raise ConfigError(f"{root}: not a run root (a folder, or s3://bucket/prefix/<run id>, whose last "
                          "name is letters, digits and ._-=+@ only)")
    layout = params.store.model_copy(update={"runs_prefix": runs_prefix, **({"bucket": bucket} if bucket else {})})
    return RunEnv(params.model_copy(update={"store": layout}), store, run_id)


def resolve(ref: str) -> Any:
    """``"package.module:Name"`` → that object (how a DAG names a stage or a task function without
    importing it at parse time)."""
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"not a 'module:name' reference: {ref!r}")
    return getattr(importlib.import_module(module), name)


# -- the runner --------------------------------------------------------------------------------------
def _numeric_sum(parts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for stats in parts:
        for k, v in stats.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


class Runner:
    """Runs stages over the shards of one run (:class:`RunEnv`), for the Airflow tasks and the command.

    ``checks``: run each stage's Great Expectations checks (the DAGs always do; the command only when
    asked, ``--checks``). ``resume``: skip a shard whose stats exist (the stats are written after its
    tables, so they mark it done). ``progress``: show a bar over the shards on a terminal (the command)."""

    def __init__(self, env: RunEnv, *, checks: bool = True, resume: bool = False, progress: bool = False) -> None:
        self.env = env
        self.checks = checks
        self.resume = resume
        self.progress = progress

    def plan(self, stage: SourceStage) -> list[int]:
        """The shard numbers a source stage would make (nothing is written)."""
        stage.setup(self.env)
        try:
            return sorted(stage.plan())
        finally:
            stage.teardown()

    def apply(self, stage: Stage, tables: Mapping[str, pa.Table], shard: int = 0) -> ShardResult:
        """Run ``stage`` on given input tables, outside any store (the command's single-file mode)."""
        self._require(stage, tables)
        stage.setup(self.env)
        try:
            return self._process(stage, Shard(shard, {n: tables[n] for n in stage.inputs}))
        finally:
            stage.teardown()

    def run(self, stage: Stage, shards: Sequence[int] | None = None) -> StageRun:
        """``stage`` over ``shards`` with one ``setup``/``teardown``: each shard's inputs are read, processed,
        written and checked. ``shards`` None: every shard of its first input (a source stage: its whole plan,
        which is then recorded as the run's)."""
        if isinstance(stage, SourceStage):
            return self._run_source(stage, shards)
        if shards is None:
            shards = self._present(stage)
        report = StageRun(stage=stage.name)
        stage.setup(self.env)
        try:
            with self._bar(stage, len(shards)) as bar:
                for n in shards:
                    bar.advance()
                    if self._done(stage, n, report):
                        continue
                    tables = {name: self.env.read_table(name, n) for name in stage.inputs}
                    result = self._process(stage, Shard(n, tables))
                    self._write(stage, n, result, report)
                    report.shards.append(n)
                    self._run_checks(stage, n, {**tables, **result.tables}, report)
                    bar.shard_done(n, _shown(stage, result))
        finally:
            stage.teardown()
        report.totals = _numeric_sum(list(report.stats.values()))
        return report

    def _run_source(self, stage: SourceStage, shards: Sequence[int] | None) -> StageRun:
        """A source stage: its plan's shards processed, merged across shards, then written and checked."""
        report = StageRun(stage=stage.name)
        results: dict[int, ShardResult] = {}
        stage.setup(self.env)
        try:
            plan = stage.plan()
            todo = sorted(plan) if shards is None else list(shards)
            with self._bar(stage, len(todo)) as bar:
                for n in todo:
                    bar.advance()
                    if not self._done(stage, n, report):
                        results[n] = self._process(stage, Shard(n, {}, plan.get(n, [])))
        finally:
            stage.teardown()
        results = stage.merge(results)
        for n, result in sorted(results.items()):
            self._write(stage, n, result, report)
        first = stage.outputs[0] if stage.outputs else None
        report.shards = [n for n, r in sorted(results.items()) if first is None or r.tables[first].num_rows]
        for n in report.shards:  # the shards it passes on (an empty one reaches no later stage)
            self._run_checks(stage, n, dict(results[n].tables), report)
        if shards is None:  # a whole run: its plan is the run's
            self.env.store.put_json(self.env.keys.plan(), {**stage.record(results), "shards": report.shards})
        report.totals = _numeric_sum(list(report.stats.values()))
        return report

    # -- steps -------------------------------------------------------------------------------------
    def _present(self, stage: Stage) -> list[int]:
        """Every shard of the stage's first input in the store (none: an error naming where it looked)."""
        if not stage.inputs:
            raise ValueError(f"stage {stage.name!r} reads no table: name the shards to run")
        shards = self.env.shard_numbers(stage.inputs[0])
        if not shards:
            raise FileNotFoundError(2, f"no {stage.inputs[0]} shards (run the stage that writes them first)",
                                    self.env.where(stage.inputs[0]))
        return shards

    def _done(self, stage: Stage, shard: int, report: StageRun) -> bool:
        """With ``resume``: the shard's stats exist (written last), so it is skipped."""
        if not self.resume or not self.env.store.exists(self.env.keys.stats(stage.name, shard)):
            return False
        log.info("%s %s: done in an earlier run (resume)", stage.name, shard_label(shard))
        report.resumed.append(shard)
        return True

    def _require(self, stage: Stage, tables: Mapping[str, pa.Table]) -> None:
        missing = [n for n in stage.inputs if n not in tables]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs the tables {missing}")

    def _process(self, stage: Stage, shard: Shard) -> ShardResult:
        """``stage.process``, and its result checked against the declarations: every declared output is there
        (a missing one is a bug of the stage, not data); reject codes outside the declared families are logged
        (a new code should be declared)."""
        result = stage.process(shard)
        missing = [n for n in stage.outputs if n not in result.tables]
        if missing:
            raise RuntimeError(f"stage {stage.name!r} returned no {missing} for {shard_label(shard.number)}")
        if result.rejects is not None and result.rejects.num_rows and stage.rejects:
            undeclared = sorted({c for c in result.rejects["code"].to_pylist() if c.split(".")[0] not in stage.rejects})
            if undeclared:
                log.warning("stage %s wrote reject codes outside its declared families %s: %s", stage.name,
                            list(stage.rejects), undeclared)
        return result

    def _write(self, stage: Stage, shard: int, result: ShardResult, report: StageRun) -> None:
        """Outputs and documents, then rejects, then stats (last: they mark the shard done); one atomic put each."""
        for name in stage.outputs:
            self.env.write_table(name, shard, result.tables[name])
        for name, doc in sorted(result.documents.items()):
            self.env.store.put_json(self.env.keys.shard_document(stage.name, name, shard), doc)
        if result.rejects is not None:
            self.env.store.put_table(self.env.keys.rejects(stage.name, shard), result.rejects, "rejects")
        if result.stats is not None:
            self.env.store.put_json(self.env.keys.stats(stage.name, shard), result.stats)
            report.stats[shard] = result.stats

    def _run_checks(self, stage: Stage, shard: int, tables: dict[str, pa.Table], report: StageRun) -> None:
        """The stage's checks on this shard (its tables first, else the run's): results and Data Docs
        are saved first, then a critical failure raises :class:`expectations.runner.ValidationFailed`."""
        if not self.checks or not stage.checks:
            return

        def table(name: str) -> pa.Table:
            if name not in tables:
                tables[name] = self.env.read_table(name, shard)
            return tables[name]

        plan = [(c.suite, table(c.table), {r: table(r) for r in c.references}) for c in stage.checks]
        report.checks[shard_label(shard)] = validate(self.env, shard_label(shard), plan)

    def _bar(self, stage: Stage, total: int) -> Any:
        from pipelines.runner.progress import ItemProgress

        return ItemProgress(stage.name, total, unit="shards", enabled=None if self.progress else False)


def _shown(stage: Stage, result: ShardResult) -> dict[str, Any]:
    """The declared metrics of a shard's stats (the progress line)."""
    stats = result.stats or {}
    return {m: stats[m] for m in stage.metrics if m in stats}


# -- run-level operations ----------------------------------------------------------------------------
def validate(env: RunEnv, label: str, plan: list[tuple[str, pa.Table, dict[str, pa.Table]]]) -> dict[str, Any]:
    """Run GX suites ``[(suite, table, references)]``; every result and its Data Docs are saved first,
    then a critical failure raises :class:`expectations.runner.ValidationFailed`."""
    from expectations.checks import References
    from expectations.runner import ValidationFailed
    from expectations.runner import validate as run_suite

    reports = [run_suite(suite, table, params=env.params, refs=References(**refs), run_id=env.run_id,
                         label=label, store=env.store, raise_on_critical=False)
               for suite, table, refs in plan]
    summary = {r.suite: {"success": r.success, "critical": r.critical_failures, "warnings": r.warnings,
                         "docs": r.docs_page_key or r.docs_index_key} for r in reports}
    env.store.put_json(env.keys.validation_step(label, [r.suite for r in reports]), summary)
    failed = [r for r in reports if not r.success]
    if failed:
        raise ValidationFailed(failed[0])
    return summary


def write_docs_index(env: RunEnv) -> str | None:
    """Render the run's Data Docs index from the sites its validations marked (one task per run calls
    this after them: the summary, or the decisions); returns its key, or None when the run has none (a
    run written before the markers keeps the index it has)."""
    from expectations.runner import docs_sites
    from expectations.runner import write_docs_index as write_index

    if docs_sites(env.store, env.keys):
        return write_index(env.store, env.keys)
    docs = env.keys.datadocs_index()
    return docs if env.store.exists(docs) else None


def summarize(env: RunEnv) -> RunSummary:
    """Counts of the run from the per-shard stats (also written to ``<runs>/<run_id>/summary.json``), and
    the run's Data Docs index (written here, once, after every validation of the run)."""
    totals: dict[str, dict[str, float]] = {}
    for key in env.store.list(env.keys.stats_prefix()):
        stage = env.keys.stats_stage(key)
        agg = totals.setdefault(stage, {})
        for k, v in env.store.get_json(key).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                agg[k] = agg.get(k, 0) + v
    docs = write_docs_index(env)
    summary = RunSummary(
        run_id=env.run_id,
        images=int(totals.get("ingest", {}).get("images", 0)),
        quarantined=int(totals.get("ingest", {}).get("quarantined", 0)),
        instances=int(totals.get("segment", {}).get("instances", 0)),
        questions=int(totals.get("questions", {}).get("questions", 0)),
        rejects=int(sum(t.get("rejected", 0) for t in totals.values())),
        stages=totals,
        datadocs=docs,
        finished_at=utc_now(),
    )
    env.ledger.put_run_summary(summary)
    return summary
