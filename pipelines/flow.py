"""What each Airflow task does, as plain Python (no Airflow import): one :class:`Flow` per DAG run.

Keys and records belong to :mod:`pipelines.ledger`, the per-shard model loop to
:mod:`pipelines.shards`, COCO matching to :mod:`pipelines.segment.annotations`, validation to
:mod:`expectations.runner`. Methods return typed records (pydantic); the Airflow side turns them
into JSON for XCom. Every write is one atomic PUT; a retried task overwrites only its own keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from pipelines.config import Params, work_home
from pipelines.contracts import SCHEMAS
from pipelines.layout import BucketLayout, shard_label
from pipelines.ledger import (
    BatchRecord,
    ConsensusRecord,
    Ledger,
    ReleaseRecord,
    RunKeys,
    RunSummary,
    batch_id_for,
    utc_now,
)
from pipelines.store import ObjectStore, S3Credentials

log = logging.getLogger(__name__)

__all__ = ["Decisions", "Flow", "OpenBatches", "batch_id_for"]


class OpenBatches(BaseModel):
    """What the annotation wait needs: the open batches, how often to poll, how many annotators."""

    batches: list[BatchRecord]
    poll_interval_s: float
    annotators_required: int
    handout: Literal["serial", "parallel"] = "serial"
    early_stop: bool = True


class Decisions(BaseModel):
    """Totals of one ``decide`` over the open batches (``tasks_fetched``: Label Studio tasks read)."""

    batches: list[str]
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    annotations_rejected: int = 0
    held_elsewhere: int = 0
    tasks_fetched: int = 0
    annotations_saved: int = 0  # answers not asked for thanks to the early stop
    withdrawn: int = 0  # tasks the decisions took out of the labeling stream
    annotations_uncounted: int = 0  # annotations that did not count (integrity.* reasons)
    held: dict[str, str] = {}  # batch -> why it was not decided (its project changed outside the platform)
    from_journal: list[str] = []  # batches decided from the store alone (Label Studio's copy unreachable)


@dataclass
class Flow:
    """One DAG run's view of the platform: configuration, object store, run id, Label Studio.

    ``label_studio`` is a factory returning a Label Studio client used as a context manager
    (:class:`pipelines.annotation.client.LabelStudioClient`). ``image_reader`` returns a read-only
    key of the bucket, which Label Studio's image storage signs image URLs with; it is called by the
    push only (the store's own key when it returns None or is None, with a warning at each push).
    """

    params: Params
    store: ObjectStore
    run_id: str
    label_studio: Callable[[], AbstractContextManager[Any]] | None = None
    s3_credentials: S3Credentials | None = None
    image_reader: Callable[[], S3Credentials | None] | None = None
    _coco: dict[str, Any] | None = field(default=None, repr=False)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.store, self.params.store)

    @property
    def keys(self) -> RunKeys:
        return self.ledger.run(self.run_id)

    def _client(self) -> AbstractContextManager[Any]:
        if self.label_studio is None:
            raise RuntimeError("this Flow has no Label Studio connection")
        return self.label_studio()

    # -- run tables ------------------------------------------------------------------------------
    def put(self, stage: str, shard: int, table: pa.Table) -> str:
        return self.store.put_table(self.keys.table(stage, shard), table, stage if stage in SCHEMAS else None)

    def get(self, stage: str, shard: int) -> pa.Table:
        return self.store.get_table(self.keys.table(stage, shard), stage if stage in SCHEMAS else None)

    def put_rejects(self, stage: str, shard: int, table: pa.Table) -> None:
        self.store.put_table(self.keys.rejects(stage, shard), table, "rejects")

    def put_stats(self, stage: str, shard: int, stats: dict[str, Any]) -> None:
        self.store.put_json(self.keys.stats(stage, shard), stats)

    def source(self) -> Any:
        from pipelines.ingest.sources import ImageSource

        return ImageSource(self.s3_credentials or self.store.creds)

    # -- ingest ----------------------------------------------------------------------------------
    def input_uri(self, input_prefix: str) -> str:
        return self.ledger.keys.input_uri(self.store.bucket, input_prefix)

    def ingest(self, input_prefix: str, shard_size: int = 0, max_images: int = 0) -> list[int]:
        """Hash, decode and shard every input image; returns the shard numbers that have images.

        Duplicates across shards are collapsed (the first uri in sorted order wins; the others go
        to quarantine with the reason). Each shard's manifest and quarantine are written at once,
        then validated before any later stage reads them.
        """
        from pipelines.ingest.sources import assign_shards
        from pipelines.ingest.stage import IngestStage, collapse_duplicates

        cfg = self.params.ingest
        if shard_size:
            cfg = cfg.model_copy(update={"shard_size": int(shard_size)})
        source = self.source()
        uri = self.input_uri(input_prefix)
        uris = source.list(uri, cfg.extensions)
        if max_images:
            uris = uris[: int(max_images)]
        if not uris:  # a night with nothing new is not an error
            self.store.put_json(self.keys.plan(), {"input": uri, "shards": [], "images": 0, "listed": 0})
            log.info("ingest %s: no input images", uri)
            return []
        stage = IngestStage(cfg, source)
        stage.setup()
        try:
            results = [stage.process(shard, chunk) for shard, chunk in enumerate(assign_shards(uris, cfg.shard_size))]
        finally:
            stage.teardown()
        manifest, dupes = collapse_duplicates([r.manifest for r in results])
        shards: list[int] = []
        for shard, res in enumerate(results):
            part = manifest.filter(pc.equal(manifest["shard"], shard))
            dq = dupes.filter(pc.is_in(dupes["uri"], value_set=res.manifest["uri"]))
            quarantine = pa.concat_tables([res.quarantine, dq])
            self.put("manifest", shard, part)
            self.put("quarantine", shard, quarantine)
            self.put_stats("ingest", shard, {"listed": len(res.manifest) + len(res.quarantine),
                                             "images": len(part), "quarantined": len(quarantine)})
            if len(part):
                shards.append(shard)
        # stage boundary: nothing downstream reads a manifest that failed its suite
        for shard in shards:
            self.validate(shard_label(shard), [("manifest", self.get("manifest", shard), {}),
                                                 ("quarantine", self.get("quarantine", shard), {})])
        self.store.put_json(self.keys.plan(), {"input": uri, "shards": shards, "images": len(manifest),
                                               "listed": len(uris)})
        log.info("ingest %s: %d images in %d shards, %d quarantined", uri, len(manifest), len(shards),
                 len(uris) - len(manifest))
        return shards

    def _input_uri_of_run(self) -> str:
        return str(self.store.get_json(self.keys.plan())["input"])

    # -- images ----------------------------------------------------------------------------------
    def load_images(self, manifest: pa.Table, stage: str) -> tuple[list[Any], list[Any]]:
        """Decoded RGB images of a manifest shard; unreadable or changed ones become reject records."""
        from pipelines.ingest.sources import load_images

        return load_images(manifest, self.params.ingest.max_pixels, self.source(), stage=stage)

    def image_loader(self) -> Callable[[dict[str, Any]], Any]:
        from pipelines.ingest.decode import decode_image

        source = self.source()
        return lambda row: decode_image(source.read(row["uri"]), max_pixels=self.params.ingest.max_pixels).image

    # -- annotations backend (COCO instances shipped with the images) ----------------------------
    def _coco_instances(self, manifest: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Instances of the shard's images from ``<input>/instances.json`` (matched by file name)."""
        from pipelines.segment.annotations import match_coco_instances

        bucket, _, prefix = self._input_uri_of_run().removeprefix("s3://").partition("/")
        if self._coco is None:
            self._coco = json.loads(self.store.get_bytes(BucketLayout.coco_instances(prefix)))
        base = f"s3://{bucket}/{prefix}/"
        return match_coco_instances(self._coco, manifest, lambda uri: uri.removeprefix(base))

    # -- detect / segment ------------------------------------------------------------------------
    def detect(self, shard: int) -> dict[str, Any]:
        manifest = self.get("manifest", shard)
        if self.params.detect.backend == "annotations":
            instances, rejects = self._coco_instances(manifest)
            dets = instances.select(["image_id", "category", "bbox", "score", "source"])
            stats: dict[str, Any] = {"images": len(manifest), "detections": len(dets), "rejected": len(rejects)}
        else:
            from pipelines.detect.stage import DetectStage
            from pipelines.shards import run_detect

            stage = DetectStage(self.params.detect, self.params.vlm)
            stage.setup()
            try:
                out = run_detect(stage, manifest, self.params, self.load_images)
            finally:
                stage.teardown()
            dets, rejects, stats = out.table, out.rejects, out.counts
        self.put("detections", shard, dets)
        self.put_rejects("detect", shard, rejects)
        stats["backend"] = self.params.detect.backend
        self.put_stats("detect", shard, stats)
        return stats

    def segment(self, shard: int) -> dict[str, Any]:
        manifest = self.get("manifest", shard)
        if self.params.segment.backend == "annotations":
            instances, rejects = self._coco_instances(manifest)
            stats: dict[str, Any] = {"images": len(manifest), "instances": len(instances), "rejected": len(rejects)}
        else:
            from pipelines.segment.stage import SegmentStage
            from pipelines.shards import run_segment

            stage = SegmentStage(self.params.segment)
            stage.setup()
            try:
                out = run_segment(stage, manifest, self.get("detections", shard), self.params, self.load_images)
            finally:
                stage.teardown()
            instances, rejects, stats = out.table, out.rejects, out.counts
        stats["backend"] = self.params.segment.backend
        self.put("instances", shard, instances)
        self.put_rejects("segment", shard, rejects)
        self.put_stats("segment", shard, stats)
        # stage boundary: the questions stage never reads instances that failed their suite
        self.validate(shard_label(shard), [("instances", instances, {"manifest": manifest})])
        return stats

    # -- questions -------------------------------------------------------------------------------
    def questions(self, shard: int) -> dict[str, Any]:
        from pipelines.questions.stage import run_questions

        cfg = self.params.questions
        manifest = self.get("manifest", shard)
        instances = self.get("instances", shard)
        model = None
        if cfg.writer == "vlm" or cfg.difficulty.enabled:  # one VLM writes and solves (params.vlm)
            from pipelines.vlm.backends import make_vlm_backend

            model = make_vlm_backend(self.params.vlm)
            model.setup()
        try:
            res = run_questions(instances, manifest, cfg, writer_backend=model, solver_backend=model,
                                image_loader=self.image_loader())
        finally:
            if model is not None:
                model.teardown()
        self.put("questions", shard, res.questions)
        self.put_rejects("questions", shard, res.rejects)
        stats = {"images": len(manifest), "questions": len(res.questions), "rejected": len(res.rejects)}
        self.put_stats("questions", shard, {**stats, "detail": res.stats})
        return stats

    # -- validation ------------------------------------------------------------------------------
    def validate(self, label: str, plan: list[tuple[str, pa.Table, dict[str, pa.Table]]]) -> dict[str, Any]:
        """Run GX suites ``[(suite, table, references)]``; every result and its Data Docs are saved
        first, then a critical failure raises :class:`expectations.runner.ValidationFailed`."""
        from expectations.checks import References
        from expectations.runner import ValidationFailed, validate

        reports = [validate(suite, table, params=self.params, refs=References(**refs), run_id=self.run_id,
                            label=label, store=self.store, raise_on_critical=False)
                   for suite, table, refs in plan]
        summary = {r.suite: {"success": r.success, "critical": r.critical_failures, "warnings": r.warnings,
                             "docs": r.docs_page_key or r.docs_index_key} for r in reports}
        self.store.put_json(self.keys.validation_step(label, [r.suite for r in reports]), summary)
        failed = [r for r in reports if not r.success]
        if failed:
            raise ValidationFailed(failed[0])
        return summary

    def validate_shard(self, shard: int) -> dict[str, Any]:
        """The questions suite (with its cross-table checks against the shard's manifest and
        instances) before the push. Manifest/quarantine were validated by ingest and instances by
        segment, each before the next stage read them."""
        t = {name: self.get(name, shard) for name in ("manifest", "instances", "questions")}
        return self.validate(shard_label(shard), [
            ("questions", t["questions"], {"manifest": t["manifest"], "instances": t["instances"]}),
        ])

    # -- push to Label Studio --------------------------------------------------------------------
    def push(self, shard: int) -> BatchRecord:
        """The shard's questions → one Label Studio batch; its ledger record (kept on a retry).

        Reads only the tasks of the shard's images (:func:`pipelines.annotation.push.push_questions`):
        the record's ``tasks_fetched`` says how many."""
        from pipelines.annotation.project import ensure_project
        from pipelines.annotation.push import push_questions

        questions = self.get("questions", shard)
        batch_id = batch_id_for(self.run_id, shard)
        cfg = self.params.annotation
        now = utc_now()
        if not len(questions):
            record = BatchRecord(batch_id=batch_id, run_id=self.run_id, shard=shard, questions=0, project_id=None,
                                 status="closed", pushed_at=now, deadline=now,
                                 questions_key=self.keys.table("questions", shard))
            self.ledger.put_batch(record)
            return record
        manifest = self.get("manifest", shard)
        with self._client() as client:
            project = ensure_project(client, cfg.project_title, cfg.annotators_required, cfg.handout)
            hold = self.project_hold(client, int(project["id"]))
            if hold is not None:  # never hand new questions to a project that is not as the platform set it
                from pipelines.config import Refused

                raise Refused(f"push refused: {hold} (look, then `hopchain project repair`, then clear this task)")
            uris = dict(zip(manifest["image_id"].to_pylist(), manifest["uri"].to_pylist(), strict=True))
            image_refs, image_ref = self._image_refs(client, int(project["id"]), uris)
            report = push_questions(client, int(project["id"]), questions.to_pylist(), image_ref, batch_id,
                                    cfg.import_batch_size)
        earlier = self.ledger.batch(batch_id)  # a retried push keeps the first push time and deadline
        record = BatchRecord(
            batch_id=batch_id, run_id=self.run_id, shard=shard, questions=len(questions),
            project_id=int(project["id"]), status="open",
            pushed_at=earlier.pushed_at if earlier else now,
            deadline=earlier.deadline if earlier else now + timedelta(minutes=cfg.deadline_minutes),
            questions_key=self.keys.table("questions", shard), created_tasks=report.created,
            already_present=report.already_present, tasks_fetched=report.tasks_fetched, image_refs=image_refs,
        )
        self.ledger.put_batch(record)
        return record

    def _image_refs(self, client: Any, project_id: int, uris: dict[str, str]) -> tuple[str, Callable[[str], str]]:
        """How the batch's tasks reference images: ``"s3"`` (``s3://`` URIs the project's image storage
        signs on every open: they never expire) or, when Label Studio refuses that storage (e.g. its
        SSRF guard bans the object store's address), ``"presigned"`` (URLs signed now, valid
        ``annotation.image_url_expiry_s``), logged and recorded on the batch record."""
        from pipelines.annotation.client import LabelStudioError
        from pipelines.annotation.project import ImageStorage, ensure_image_storage
        from pipelines.annotation.push import presigned_image_urls, s3_image_refs

        reader = self.image_reader() if self.image_reader is not None else None
        creds = reader or self.store.creds
        if reader is None:
            log.warning("Label Studio's image storage gets the platform's read-write key: give it a read-only "
                        "key of bucket %s (Airflow connection hopchain_s3_reader; in docker/.env "
                        "HOPCHAIN_S3_READER_ACCESS_KEY / HOPCHAIN_S3_READER_SECRET_KEY)", self.store.bucket)
        storage = ImageStorage(self.store.bucket, creds.url, creds.access_key, creds.secret_key, creds.region)
        try:
            ensure_image_storage(client, project_id, storage)
        except LabelStudioError as err:
            if err.status_code is None or err.status_code >= 500:
                raise
            log.warning("Label Studio refused the image storage (HTTP %s: %s); this batch's images are "
                        "presigned URLs valid %d s", err.status_code, str(err.body)[:200],
                        self.params.annotation.image_url_expiry_s)
            return "presigned", presigned_image_urls(self.store, uris, self.params.annotation.image_url_expiry_s)
        return "s3", s3_image_refs(self.store.bucket, uris)

    def pushed_batches(self) -> list[BatchRecord]:
        """Open batches this run pushed to Label Studio."""
        return [b for b in self.ledger.open_batches() if b.run_id == self.run_id]

    # -- annotation DAG --------------------------------------------------------------------------
    def open_batches(self) -> OpenBatches:
        cfg = self.params.annotation
        return OpenBatches(batches=self.ledger.open_batches(), poll_interval_s=cfg.poll_interval_s,
                           annotators_required=cfg.annotators_required, handout=cfg.handout,
                           early_stop=cfg.early_stop)

    def simulate_annotators(self, open_batches: OpenBatches | dict[str, Any]) -> dict[str, Any]:
        """Demo only: the simulated accounts answer every open batch through the real LS API.
        ``open_batches`` is :meth:`open_batches`' result (or its JSON, as XCom carries it)."""
        from pipelines.annotation.registry import SIMULATED, save
        from pipelines.annotation.simulated import run_simulation, simulated_annotators
        from pipelines.annotation.tend import tend
        from pipelines.config import Refused, simulated_allowed

        if not simulated_allowed():
            raise Refused("simulated annotators are forbidden in this deployment (HOPCHAIN_SIMULATED_ANNOTATORS is "
                          "not 'allow'): their answers would be released as human ones")
        open_batches = OpenBatches.model_validate(open_batches)
        cfg = self.params.annotation
        sim = cfg.simulated
        done: dict[str, int] = {}
        # The labeling stream hands out tasks of every batch of a project, so the simulated
        # annotators get the answers of all open batches of that project at once.
        truths_by_project: dict[int, dict[str, Any]] = {}
        for b in open_batches.batches:
            if b.project_id is None:
                continue
            truths = truths_by_project.setdefault(b.project_id, {})
            for q in self.store.get_table(b.questions_key, "questions").to_pylist():
                truths[q["question_id"]] = q["answer"]
        with self._client() as client:
            annotators = simulated_annotators(client, client.token, sim.count)
            # the stand-ins are registered as what they are: their answers are released as "simulated"
            registry = self.registry()
            platform = {int(client.whoami()["id"])}
            if any([registry.register(int(a.client.whoami()["id"]), a.email, SIMULATED, platform)
                    for a in annotators]):
                save(self.store, self.ledger.annotators_key, registry)
            try:
                for project_id, truths in truths_by_project.items():
                    project_batches = [b for b in open_batches.batches if b.project_id == project_id]

                    def handout(project_batches: list[BatchRecord] = project_batches) -> bool:
                        # what hopchain_labeling's tend does on its schedule, while these stand-ins work
                        report = tend(client, self._tending(client, project_batches))
                        return report.complete == report.tasks and not report.held

                    for email, n in run_simulation(annotators, project_id, truths, sim.error_rate, sim.seed,
                                                   handout=handout, handout_poll_s=sim.handout_poll_s).items():
                        done[email] = done.get(email, 0) + n
            finally:
                for a in annotators:
                    a.client.close()
        return {"tasks_done": done}

    def tend(self, open_batches: OpenBatches | dict[str, Any] | None = None) -> Any:
        """One pass of :func:`pipelines.annotation.tend.tend` over the open batches (default: the
        ledger's): journal new answers, find the ones that do not count, hand tasks out. Returns a
        :class:`~pipelines.annotation.tend.TendReport`. Idempotent; what DAG ``hopchain_labeling``
        runs on its schedule, each decision before it decides, and the demo's simulation."""
        from pipelines.annotation.tend import TendReport, tend

        batches = OpenBatches.model_validate(open_batches).batches if open_batches is not None \
            else self.ledger.open_batches()
        if not any(b.project_id is not None for b in batches):
            return TendReport()
        with self._client() as client:
            return tend(client, self._tending(client, batches))

    # -- trust: journal, registered annotators, the project as the platform set it --------------------
    @cached_property
    def journal(self) -> Any:
        from pipelines.annotation.journal import Journal

        return Journal(self.store, self.ledger.journal_prefix)

    def registry(self) -> Any:
        from pipelines.annotation.registry import load

        return load(self.store, self.ledger.annotators_key)

    @cached_property
    def pseudonym(self) -> Callable[[int | None], str]:
        """Label Studio user id → the stable pseudonym the audit tables and releases show."""
        from pipelines.annotation.registry import pseudonym_key, pseudonymizer

        return pseudonymizer(pseudonym_key(self.store, self.ledger.pseudonym_key_key))

    def project_hold(self, client: Any, project_id: int) -> str | None:
        """One line saying how project ``project_id`` differs from what the platform set (its batches
        are then held), or None. A project that is gone (Label Studio's database lost) is not a
        hold: its batches are decided from the journal."""
        from pipelines.annotation.guard import check_project, expected_state, hold_reason

        cfg = self.params.annotation
        drifts = check_project(client, project_id,
                               expected_state(cfg.project_title, cfg.annotators_required, cfg.handout))
        drifts = [d for d in drifts if d.field != "project"]
        return hold_reason(drifts, project_id) if drifts else None

    def _tending(self, client: Any, batches: list[BatchRecord]) -> Any:
        from pipelines.annotation.tend import BatchRef, Tending

        cfg = self.params.annotation
        return Tending(
            batches=[BatchRef(int(b.project_id), b.batch_id) for b in batches if b.project_id is not None],
            required=cfg.annotators_required, handout=cfg.handout, early_stop=cfg.early_stop,
            journal=self.journal, registry=self.registry(), platform=frozenset({int(client.whoami()["id"])}),
            check_project=self.project_hold)

    def decide(self, open_batches: OpenBatches | dict[str, Any]) -> Decisions:
        """Pull, journal, validate and decide every open batch; pending items stay open for the next run.
        ``open_batches`` is :meth:`open_batches`' result (or its JSON, as XCom carries it).

        Each batch is decided from its own tasks (:func:`pipelines.annotation.pull.decide_batch`) as the
        annotation journal holds them, counting only the annotations of registered annotators that
        nobody changed after the platform first saw them. A batch whose project changed outside the
        platform is held (not decided). When Label Studio cannot serve the batch (down, or its
        database lost: the project is gone) the batch is decided from the journal alone.
        """
        from pipelines.annotation.client import LabelStudioError

        open_batches = OpenBatches.model_validate(open_batches)
        totals = Decisions(batches=[])
        registry = self.registry()
        names = {a.user_id: a.email for a in registry.annotators}
        with ExitStack() as stack:
            client: Any = None
            platform: frozenset[int] = frozenset()
            try:
                client = stack.enter_context(self._client())
                platform = frozenset({int(client.whoami()["id"])})
            except (LabelStudioError, OSError, httpx.HTTPError) as err:
                log.warning("Label Studio unreachable (%s: %s): deciding from the annotation journal alone",
                            type(err).__name__, err)
                client = None
            holds: dict[int, str | None] = {}
            for b in open_batches.batches:
                if b.project_id is None:
                    continue
                if client is not None and b.project_id not in holds:
                    holds[b.project_id] = self.project_hold(client, b.project_id)
                reason = holds.get(b.project_id)
                if reason is not None:
                    log.warning("batch %s held: %s", b.batch_id, reason)
                    self.ledger.put_batch(b.model_copy(update={"held": reason}))
                    totals.held[b.batch_id] = reason
                    continue
                self._decide_batch(client, b, registry, names, platform, totals)
        self.write_docs_index()  # the consensus suites' sites of this run, now that every batch is decided
        return totals

    def _decide_batch(self, client: Any, b: BatchRecord, registry: Any, names: dict[int, str],
                      platform: frozenset[int], totals: Decisions) -> None:
        from pipelines.annotation.pull import decide_batch, decide_journaled

        cfg = self.params.annotation
        questions = self.store.get_table(b.questions_key, "questions")
        assert b.project_id is not None
        result = None
        if client is not None:
            try:
                result = decide_batch(client, b.project_id, b.batch_id, questions.to_pylist(),
                                      cfg.annotators_required, names, cfg.early_stop, cfg.handout,
                                      journal=self.journal, registry=registry, platform=platform)
            except LookupError as err:  # the project is gone (Label Studio's database lost)
                log.warning("batch %s: %s; deciding from the annotation journal alone", b.batch_id, err)
        if result is None:
            result = decide_journaled(self.journal.view(b.project_id, b.batch_id), questions.to_pylist(),
                                      cfg.annotators_required, names, cfg.early_stop, registry, platform)
            totals.from_journal.append(b.batch_id)
        tables = result.tables()
        tables["audit"] = result.audit_table(self.pseudonym)
        keys = {}
        for name, table in tables.items():
            keys[name] = self.ledger.consensus_table_key(b.batch_id, name)
            self.store.put_table(keys[name], table, name if name in SCHEMAS else None)
        self.validate(f"consensus-{b.batch_id}", [
            ("annotations", tables["annotations"], {"questions": questions}),
            ("consensus", tables["consensus"], {"questions": questions, "annotations": tables["annotations"]}),
        ])
        counts = result.consensus.status_counts()
        held_here = max(1, len(questions) - len(result.held_elsewhere))
        cost = result.consensus.cost(cfg.annotators_required)
        decision = ConsensusRecord(
            batch_id=b.batch_id, run_id=b.run_id, decided_by=self.run_id,
            accepted=counts.get("accepted", 0), rejected=counts.get("rejected", 0),
            pending=counts.get("pending", 0), annotations_rejected=len(result.invalid),
            agreement_rate=round(counts.get("accepted", 0) / held_here, 4),
            decided_at=utc_now(), keys=keys, held_elsewhere=len(result.held_elsewhere),
            tasks_fetched=result.tasks_fetched,
            annotations_per_accepted=cost.annotations_per_accepted,
            annotations_saved=cost.annotations_saved, withdrawn=result.withdrawn,
            integrity=result.integrity_counts(), journaled=result.journaled,
            source="journal" if result.source == "journal" else "label-studio",
        )
        self.ledger.put_consensus(decision)
        if decision.pending:
            # carried over: the next run waits for the rest with a fresh deadline
            batch = b.model_copy(update={
                "deadline": utc_now() + timedelta(minutes=cfg.deadline_minutes),
                "carried_over": b.carried_over + 1, "pending": decision.pending, "held": None})
        else:
            batch = b.model_copy(update={"status": "closed", "pending": 0, "held": None})
        self.ledger.put_batch(batch)
        totals.batches.append(b.batch_id)
        totals.accepted += decision.accepted
        totals.rejected += decision.rejected
        totals.pending += decision.pending
        totals.annotations_rejected += decision.annotations_rejected
        totals.held_elsewhere += decision.held_elsewhere
        totals.tasks_fetched += decision.tasks_fetched
        totals.annotations_saved += decision.annotations_saved
        totals.withdrawn += decision.withdrawn
        totals.annotations_uncounted += sum(decision.integrity.values())

    # -- release ---------------------------------------------------------------------------------
    def release(self, home: Path | None = None) -> ReleaseRecord:
        """The cumulative release (:func:`pipelines.release.platform.release_from_store`), with its
        registry checkout and default registry under ``home`` (default: this machine's
        :func:`~pipelines.config.work_home`)."""
        from pipelines.release.platform import release_from_store

        return release_from_store(self.params, self.store, self.run_id, home or work_home(self.params))

    # -- summary ---------------------------------------------------------------------------------
    def write_docs_index(self) -> str | None:
        """Render the run's Data Docs index from the sites its validations marked (one task per run
        calls this after them: the summary, or the decisions); returns its key, or None when the run
        has none (a run written before the markers keeps the index it has)."""
        from expectations.runner import docs_sites, write_docs_index

        if docs_sites(self.store, self.keys):
            return write_docs_index(self.store, self.keys)
        docs = self.keys.datadocs_index()
        return docs if self.store.exists(docs) else None

    def summary(self) -> RunSummary:
        """Counts of the run from the per-shard stats (also written to ``<runs>/<run_id>/summary.json``)."""
        totals: dict[str, dict[str, float]] = {}
        for key in self.store.list(self.keys.stats_prefix()):
            stage = self.keys.stats_stage(key)
            agg = totals.setdefault(stage, {})
            for k, v in self.store.get_json(key).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    agg[k] = agg.get(k, 0) + v
        docs = self.write_docs_index()
        summary = RunSummary(
            run_id=self.run_id,
            images=int(totals.get("ingest", {}).get("images", 0)),
            quarantined=int(totals.get("ingest", {}).get("quarantined", 0)),
            instances=int(totals.get("segment", {}).get("instances", 0)),
            questions=int(totals.get("questions", {}).get("questions", 0)),
            rejects=int(sum(t.get("rejected", 0) for t in totals.values())),
            stages=totals,
            datadocs=docs,
            finished_at=utc_now(),
        )
        self.ledger.put_run_summary(summary)
        return summary
