"""The platform's run-level flow: what each Airflow task does, as plain Python (no Airflow import).

Layout in the platform bucket (every write is one atomic PUT; a retried task overwrites only
its own keys):

* ``inputs/<name>/``                              input images (+ ``instances.json`` for the annotations backend)
* ``runs/<run_id>/<stage>/shard-NNNNN.parquet``   manifest, quarantine, detections, instances, questions
* ``runs/<run_id>/rejects/<stage>/shard-NNNNN.parquet``   refused items with reasons (contracts.REJECTS)
* ``runs/<run_id>/stats/<stage>/shard-NNNNN.json``        counts per task
* ``runs/<run_id>/validation/…`` and ``runs/<run_id>/datadocs/…``   GX results and Data Docs
* ``runs/<run_id>/summary.json``                  counts of the run (the plugin page reads it)
* ``batches/<batch_id>.json``                     the ledger of batches pushed to Label Studio
* ``consensus/<batch_id>/…`` + ``consensus/<batch_id>.json``   decided annotations per batch
* ``releases/<tag>.json`` + ``releases/<tag>/…``  published releases (card, metrics)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.config import Params
from pipelines.contracts import empty_table, to_table
from pipelines.store import ObjectStore, S3Credentials, run_key, safe_key

log = logging.getLogger(__name__)

STAGE_TABLES = {
    "manifest": "manifest",
    "quarantine": "quarantine",
    "detections": "detections",
    "instances": "instances",
    "questions": "questions",
}


def batch_id_for(run_id: str, shard: int) -> str:
    """A batch id that is a safe object-key segment and a Label Studio filter value."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")
    return f"{clean}.shard-{shard:05d}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Flow:
    """One DAG run's view of the platform: configuration, object store, run id, Label Studio."""

    params: Params
    store: ObjectStore
    run_id: str
    label_studio: Callable[[], Any] | None = None  # factory: -> pipelines.annotation.client.LabelStudioClient
    s3_credentials: S3Credentials | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    # -- keys ----------------------------------------------------------------------------------
    @property
    def runs(self) -> str:
        return self.params.store.runs_prefix

    def key(self, stage: str, shard: int) -> str:
        return run_key(self.runs, self.run_id, stage, shard)

    def reject_key(self, stage: str, shard: int) -> str:
        return run_key(self.runs, self.run_id, f"rejects/{stage}", shard)

    def stats_key(self, stage: str, shard: int) -> str:
        return run_key(self.runs, self.run_id, f"stats/{stage}", name=f"shard-{shard:05d}.json")

    def put(self, stage: str, shard: int, table: pa.Table) -> str:
        return self.store.put_table(self.key(stage, shard), table, STAGE_TABLES.get(stage))

    def get(self, stage: str, shard: int) -> pa.Table:
        return self.store.get_table(self.key(stage, shard), STAGE_TABLES.get(stage))

    def put_rejects(self, stage: str, shard: int, table: pa.Table) -> None:
        self.store.put_table(self.reject_key(stage, shard), table, "rejects")

    def put_stats(self, stage: str, shard: int, stats: dict[str, Any]) -> None:
        self.store.put_json(self.stats_key(stage, shard), stats)

    def source(self):
        from pipelines.ingest.sources import ImageSource

        return ImageSource(self.s3_credentials or self.store.creds)

    # -- ingest --------------------------------------------------------------------------------
    def input_uri(self, input_prefix: str) -> str:
        prefix = safe_key(self.params.store.inputs_prefix, input_prefix.removeprefix(
            self.params.store.inputs_prefix + "/"))
        return f"s3://{self.store.bucket}/{prefix}"

    def ingest(self, input_prefix: str, shard_size: int = 0, max_images: int = 0) -> list[int]:
        """Hash, decode and shard every input image; returns the shard numbers that have images.

        Duplicates across shards are collapsed (the first uri in sorted order wins; the others go
        to quarantine with the reason). Each shard's manifest and quarantine are written at once.
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
            self.store.put_json(run_key(self.runs, self.run_id, "ingest", name="plan.json"),
                                {"input": uri, "shards": [], "images": 0, "listed": 0})
            log.info("ingest %s: no input images", uri)
            return []
        stage = IngestStage(cfg, source)
        stage.setup()
        results = [stage.process(shard, chunk) for shard, chunk in enumerate(assign_shards(uris, cfg.shard_size))]
        stage.teardown()
        manifest, dupes = collapse_duplicates([r.manifest for r in results])
        shards: list[int] = []
        for shard, res in enumerate(results):
            part = manifest.filter(pa.compute.equal(manifest["shard"], shard))
            dq = dupes.filter(pa.compute.is_in(dupes["uri"], value_set=res.manifest["uri"]))
            quarantine = pa.concat_tables([res.quarantine, dq])
            self.put("manifest", shard, part)
            self.put("quarantine", shard, quarantine)
            self.put_stats("ingest", shard, {"listed": len(res.manifest) + len(res.quarantine),
                                             "images": len(part), "quarantined": len(quarantine)})
            if len(part):
                shards.append(shard)
        # stage boundary: nothing downstream reads a manifest that failed its suite
        for shard in shards:
            self.validate(f"shard-{shard:05d}", [("manifest", self.get("manifest", shard), {}),
                                                 ("quarantine", self.get("quarantine", shard), {})])
        self.store.put_json(run_key(self.runs, self.run_id, "ingest", name="plan.json"),
                            {"input": uri, "shards": shards, "images": len(manifest), "listed": len(uris)})
        log.info("ingest %s: %d images in %d shards, %d quarantined", uri, len(manifest), len(shards),
                 len(uris) - len(manifest))
        return shards

    def input_prefix_of_run(self) -> str:
        plan = self.store.get_json(run_key(self.runs, self.run_id, "ingest", name="plan.json"))
        return str(plan["input"])

    # -- images ----------------------------------------------------------------------------------
    def load_items(self, manifest: pa.Table, stage: str) -> tuple[list[Any], list[dict[str, Any]]]:
        """Decoded RGB images of a manifest shard; unreadable or changed ones become reject rows."""
        from pipelines.ingest.sources import load_images

        return load_images(manifest, self.params.ingest.max_pixels, self.source(), stage=stage)

    def image_loader(self) -> Callable[[dict[str, Any]], Any]:
        from pipelines.ingest.decode import decode_image

        source = self.source()
        return lambda row: decode_image(source.read(row["uri"]), max_pixels=self.params.ingest.max_pixels).image

    # -- annotations backend (COCO instances shipped with the images) --------------------------
    def _coco_instances(self, manifest: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Instances of the shard's images from ``<input>/instances.json`` (matched by file name)."""
        from pipelines.segment.annotations import image_instances

        from pipelines.detect.parser import normalize_label

        base = self.input_prefix_of_run()
        bucket, _, prefix = base.removeprefix("s3://").partition("/")
        coco_key = f"{prefix}/instances.json"
        if "coco" not in self._cache:
            self._cache["coco"] = json.loads(self.store.get_bytes(coco_key))
        coco = self._cache["coco"]
        cats = {c["id"]: normalize_label(c["name"]) for c in coco.get("categories", [])}
        by_file = {im["file_name"]: im for im in coco.get("images", [])}
        anns: dict[Any, list[dict]] = {}
        for a in coco.get("annotations", []):
            anns.setdefault(a["image_id"], []).append(a)
        rows, rejects = [], []
        for m in manifest.to_pylist():
            rel = m["uri"].removeprefix(f"s3://{bucket}/{prefix}/")
            im = by_file.get(rel) or by_file.get(rel.rsplit("/", 1)[-1])
            if im is None:
                rejects.append({"stage": "annotations", "item_id": m["image_id"],
                                "reason": "image has no entry in instances.json", "raw": m["uri"]})
                continue
            if (int(im["width"]), int(im["height"])) != (m["width"], m["height"]):
                rejects.append({"stage": "annotations", "item_id": m["image_id"],
                                "reason": f"annotated size {im['width']}x{im['height']} != image "
                                          f"{m['width']}x{m['height']}", "raw": m["uri"]})
                continue
            got, bad = image_instances(anns.get(im["id"], []), cats, m["image_id"], m["height"], m["width"],
                                       "annotations:instances.json")
            rows += got
            rejects += bad
        return to_table(rows, "instances"), to_table(rejects, "rejects")

    # -- detect / segment ----------------------------------------------------------------------
    def detect(self, shard: int) -> dict[str, Any]:
        manifest = self.get("manifest", shard)
        if self.params.detect.backend == "annotations":
            instances, rejects = self._coco_instances(manifest)
            dets = instances.select(["image_id", "category", "bbox", "score", "source"])
            self.put("detections", shard, dets)
            self.put_rejects("detect", shard, rejects)
            stats = {"images": len(manifest), "detections": len(dets), "rejected": len(rejects),
                     "backend": "annotations"}
        else:
            from pipelines.detect.stage import DetectStage

            items, load_rejects = self.load_items(manifest, "detect")
            stage = DetectStage(self.params.detect)
            stage.setup()
            try:
                bs = max(1, self.params.detect.qwen3vl.batch_size)
                parts = [stage.process(items[i: i + bs]) for i in range(0, len(items), bs)]
            finally:
                stage.teardown()
            dets = pa.concat_tables([p.detections for p in parts]) if parts else empty_table("detections")
            rejects = pa.concat_tables([to_table(load_rejects, "rejects"), *[p.rejects for p in parts]])
            self.put("detections", shard, dets)
            self.put_rejects("detect", shard, rejects)
            stats = {"images": len(manifest), "detections": len(dets), "rejected": len(rejects),
                     "backend": self.params.detect.backend}
        self.put_stats("detect", shard, stats)
        return stats

    def segment(self, shard: int) -> dict[str, Any]:
        manifest = self.get("manifest", shard)
        if self.params.segment.backend == "annotations":
            instances, rejects = self._coco_instances(manifest)
            stats: dict[str, Any] = {"images": len(manifest), "instances": len(instances), "backend": "annotations"}
        else:
            from pipelines.segment.stage import SegmentStage

            detections = self.get("detections", shard)
            items, load_rejects = self.load_items(manifest, "segment")
            stage = SegmentStage(self.params.segment)
            stage.setup()
            try:
                seg = self.params.segment
                bs = max(1, getattr(seg, seg.backend).batch_size)
                parts = []
                for i in range(0, len(items), bs):
                    chunk = items[i: i + bs]
                    ids = pa.array([it.image_id for it in chunk])
                    parts.append(stage.process(chunk, detections.filter(pa.compute.is_in(
                        detections["image_id"], value_set=ids))))
            finally:
                stage.teardown()
            instances = pa.concat_tables([p.instances for p in parts]) if parts else empty_table("instances")
            rejects = pa.concat_tables([to_table(load_rejects, "rejects"), *[p.rejects for p in parts]])
            timings = {k: round(sum(p.timings.get(k, 0.0) for p in parts), 3) for k in ("model_s", "encode_s", "total_s")}
            stats = {"images": len(manifest), "instances": len(instances), "backend": self.params.segment.backend,
                     **timings}
        self.put("instances", shard, instances)
        self.put_rejects("segment", shard, rejects)
        stats["rejected"] = len(rejects)
        self.put_stats("segment", shard, stats)
        # stage boundary: the questions stage never reads instances that failed their suite
        self.validate(f"shard-{shard:05d}", [("instances", instances, {"manifest": manifest})])
        return stats

    # -- questions -----------------------------------------------------------------------------
    def questions(self, shard: int) -> dict[str, Any]:
        from pipelines.questions.stage import run_questions

        cfg = self.params.questions
        manifest = self.get("manifest", shard)
        instances = self.get("instances", shard)
        writer = solver = None
        if cfg.writer == "vlm" or cfg.difficulty.enabled:
            from pipelines.detect.backends import make_vlm_backend

            writer = solver = make_vlm_backend(self.params.detect)
            writer.setup()
        try:
            res = run_questions(instances, manifest, cfg, writer_backend=writer, solver_backend=solver,
                                image_loader=self.image_loader())
        finally:
            if writer is not None:
                writer.teardown()
        self.put("questions", shard, res.questions)
        self.put_rejects("questions", shard, res.rejects)
        stats = {"images": len(manifest), "questions": len(res.questions), "rejected": len(res.rejects)}
        self.put_stats("questions", shard, {**stats, "detail": res.stats})
        return stats

    # -- validation ----------------------------------------------------------------------------
    def validate(self, label: str, plan: list[tuple[str, pa.Table, dict[str, pa.Table]]]) -> dict[str, Any]:
        """Run GX suites ``[(suite, table, references)]``; every result and its Data Docs are saved
        first, then a critical failure raises :class:`expectations.runner.ValidationFailed`."""
        from expectations.checks import References
        from expectations.runner import ValidationFailed, validate

        reports = []
        for suite, table, refs in plan:
            reports.append(validate(suite, table, params=self.params, refs=References(**refs), run_id=self.run_id,
                                    label=label, store=self.store, raise_on_critical=False))
        write_docs_index(self.store, self.params.store.runs_prefix, self.run_id)
        summary = {r.suite: {"success": r.success, "critical": r.critical_failures, "warnings": r.warnings,
                             "docs": r.docs_page_key or r.docs_index_key} for r in reports}
        suites = "+".join(r.suite for r in reports)
        self.store.put_json(run_key(self.runs, self.run_id, "validation", name=f"{label}.{suites}.json"), summary)
        failed = [r for r in reports if not r.success]
        if failed:
            raise ValidationFailed(failed[0])
        return summary

    def validate_shard(self, shard: int) -> dict[str, Any]:
        """The questions suite (with its cross-table checks against the shard's manifest and
        instances) before the push. Manifest/quarantine were validated by ingest and instances by
        segment, each before the next stage read them."""
        t = {name: self.get(name, shard) for name in ("manifest", "instances", "questions")}
        return self.validate(f"shard-{shard:05d}", [
            ("questions", t["questions"], {"manifest": t["manifest"], "instances": t["instances"]}),
        ])

    # -- push to Label Studio ------------------------------------------------------------------
    def push(self, shard: int) -> dict[str, Any]:
        from pipelines.annotation.project import ensure_project
        from pipelines.annotation.push import presigned_image_urls, push_questions

        questions = self.get("questions", shard)
        manifest = self.get("manifest", shard)
        batch_id = batch_id_for(self.run_id, shard)
        cfg = self.params.annotation
        ledger_key = safe_key("batches", f"{batch_id}.json")
        if not len(questions):
            record = {"batch_id": batch_id, "run_id": self.run_id, "shard": shard, "questions": 0,
                      "project_id": None, "status": "closed", "pushed_at": _now().isoformat(),
                      "deadline": _now().isoformat(), "questions_key": self.key("questions", shard)}
            self.store.put_json(ledger_key, record)
            return record
        with self.label_studio() as client:
            project = ensure_project(client, cfg.project_title, cfg.annotators_required)
            uris = dict(zip(manifest["image_id"].to_pylist(), manifest["uri"].to_pylist()))
            report = push_questions(client, int(project["id"]), questions.to_pylist(),
                                    presigned_image_urls(self.store, uris, cfg.image_url_expiry_s), batch_id,
                                    cfg.import_batch_size)
        now = _now()
        existing = self.store.get_json(ledger_key) if self.store.exists(ledger_key) else {}
        record = {
            "batch_id": batch_id, "run_id": self.run_id, "shard": shard, "questions": len(questions),
            "project_id": int(project["id"]), "status": "open",
            "pushed_at": existing.get("pushed_at", now.isoformat()),
            "deadline": existing.get("deadline", (now + timedelta(minutes=cfg.deadline_minutes)).isoformat()),
            "questions_key": self.key("questions", shard), "created_tasks": report.created,
        }
        self.store.put_json(ledger_key, record)
        return record

    def pushed_batches(self) -> list[dict[str, Any]]:
        """Open batches this run pushed to Label Studio."""
        return [b for b in read_batches(self.store) if b.get("run_id") == self.run_id and b.get("status") == "open"]

    # -- annotation DAG ------------------------------------------------------------------------
    def open_batches(self) -> dict[str, Any]:
        batches = [b for b in read_batches(self.store) if b.get("status") == "open"]
        return {"batches": batches}

    def simulate_annotators(self, batches: dict[str, Any]) -> dict[str, Any]:
        """Demo only: the simulated accounts answer every open batch through the real LS API."""
        from pipelines.annotation.simulated import run_simulation, simulated_annotators

        sim = self.params.annotation.simulated
        done: dict[str, int] = {}
        # The labeling stream hands out tasks of every batch of a project, so the simulated
        # annotators get the answers of all open batches of that project at once.
        truths_by_project: dict[int, dict[str, Any]] = {}
        for b in batches.get("batches", []):
            truths = truths_by_project.setdefault(int(b["project_id"]), {})
            for q in self.store.get_table(b["questions_key"], "questions").to_pylist():
                truths[q["question_id"]] = q["answer"]
        with self.label_studio() as client:
            annotators = simulated_annotators(client, client.token, sim.count)
            try:
                for project_id, truths in truths_by_project.items():
                    for email, n in run_simulation(annotators, project_id, truths, sim.error_rate, sim.seed).items():
                        done[email] = done.get(email, 0) + n
            finally:
                for a in annotators:
                    a.client.close()
        return {"tasks_done": done}

    def decide(self, batches: dict[str, Any]) -> dict[str, Any]:
        """Pull, validate and decide every open batch; pending items stay open for the next run.

        Each project's tasks are fetched once: a question pushed again by a later run (same
        ``question_id``) keeps its original task, so batches are decided from the whole project.
        """
        from pipelines.annotation.pull import annotator_names, decide_tasks

        cfg = self.params.annotation
        totals = {"accepted": 0, "rejected": 0, "pending": 0, "annotations_rejected": 0}
        decided = []
        tasks_by_project: dict[int, list[dict[str, Any]]] = {}
        with self.label_studio() as client:
            names = annotator_names(client)
            for b in batches.get("batches", []):
                project_id = int(b["project_id"])
                if project_id not in tasks_by_project:
                    tasks_by_project[project_id] = list(client.iter_tasks(project_id, fields="all"))
                questions = self.store.get_table(b["questions_key"], "questions")
                generated = {q["question_id"]: q["answer"] for q in questions.to_pylist()}
                result = decide_tasks(tasks_by_project[project_id], generated, cfg.annotators_required, names)
                keys = {}
                for name, table in result.tables().items():
                    key = safe_key("consensus", b["batch_id"], f"{name}.parquet")
                    contract = name if name in ("annotations", "consensus", "rejects") else None
                    self.store.put_table(key, table, contract)
                    keys[name] = key
                counts = result.consensus.status_counts()
                summary = {
                    "batch_id": b["batch_id"], "run_id": b["run_id"], "decided_by": self.run_id,
                    "accepted": counts.get("accepted", 0), "rejected": counts.get("rejected", 0),
                    "pending": counts.get("pending", 0), "annotations_rejected": len(result.invalid),
                    "agreement_rate": round(counts.get("accepted", 0) / max(1, len(questions)), 4),
                    "decided_at": _now().isoformat(), "keys": keys,
                }
                self._validate_consensus(b, result, keys)
                self.store.put_json(safe_key("consensus", f"{b['batch_id']}.json"), summary)
                record = dict(b)
                if summary["pending"]:
                    # carried over: the next run waits for the rest with a fresh deadline
                    record["deadline"] = (_now() + timedelta(minutes=cfg.deadline_minutes)).isoformat()
                    record["carried_over"] = int(b.get("carried_over", 0)) + 1
                else:
                    record["status"] = "closed"
                record["pending"] = summary["pending"]
                self.store.put_json(safe_key("batches", f"{b['batch_id']}.json"), record)
                for k in totals:
                    totals[k] += summary[k]
                decided.append(b["batch_id"])
        return {"batches": decided, **totals}

    def _validate_consensus(self, batch: dict[str, Any], result: Any, keys: dict[str, str]) -> None:
        tables = result.tables()
        questions = self.store.get_table(batch["questions_key"], "questions")
        self.validate(f"consensus-{batch['batch_id']}", [
            ("annotations", tables["annotations"], {"questions": questions}),
            ("consensus", tables["consensus"], {"questions": questions, "annotations": tables["annotations"]}),
        ])

    # -- release -------------------------------------------------------------------------------
    def release(self) -> dict[str, Any]:
        from pipelines.release.platform import release_from_store

        return release_from_store(self.params, self.store, self.run_id)

    # -- summary -------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts of the run from the per-shard stats (written to runs/<run_id>/summary.json)."""
        prefix = safe_key(self.runs, self.run_id, "stats") + "/"
        totals: dict[str, dict[str, float]] = {}
        for key in self.store.list(prefix):
            stage = key.split("/")[-2]
            stats = self.store.get_json(key)
            agg = totals.setdefault(stage, {})
            for k, v in stats.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    agg[k] = agg.get(k, 0) + v
        docs = run_key(self.runs, self.run_id, "datadocs", name="index.html")
        out = {
            "run_id": self.run_id,
            "images": int(totals.get("ingest", {}).get("images", 0)),
            "quarantined": int(totals.get("ingest", {}).get("quarantined", 0)),
            "instances": int(totals.get("segment", {}).get("instances", 0)),
            "questions": int(totals.get("questions", {}).get("questions", 0)),
            "rejects": int(sum(t.get("rejected", 0) for t in totals.values())),
            "stages": totals,
            "datadocs": docs if self.store.exists(docs) else None,
            "finished_at": _now().isoformat(),
        }
        self.store.put_json(safe_key(self.runs, self.run_id, "summary.json"), out)
        return out


def write_docs_index(store: ObjectStore, runs_prefix: str, run_id: str) -> str:
    """``runs/<run_id>/datadocs/index.html``: one page linking every suite's Data Docs of the run."""
    import html

    prefix = safe_key(runs_prefix, run_id, "datadocs") + "/"
    sites = sorted(k for k in store.list(prefix) if k.endswith("/index.html") and k != prefix + "index.html")
    items = "".join(
        f"<li><a href='{html.escape(k[len(prefix):])}'>{html.escape(k[len(prefix):-len('/index.html')])}</a></li>"
        for k in sites)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Data Docs {html.escape(run_id)}</title></head>"
            f"<body><h1>Great Expectations Data Docs</h1><p>run {html.escape(run_id)}</p><ul>{items}</ul></body></html>")
    key = prefix + "index.html"
    store.put_bytes(key, page.encode(), "text/html")
    return key


def read_batches(store: ObjectStore) -> list[dict[str, Any]]:
    return _read_jsons(store, "batches/")


def _read_jsons(store: ObjectStore, prefix: str) -> list[dict[str, Any]]:
    """The JSON records directly under ``prefix`` (one listing level, not the data beside them)."""
    return [store.get_json(k) for k in sorted(store.list(prefix, recursive=False)) if k.endswith(".json")]


def read_ledger(store: ObjectStore) -> dict[str, Any]:
    """Runs, batches, consensus and releases, newest first (what the plugin page shows)."""
    runs = []
    for run_prefix in store.list_prefixes("runs/"):  # one listing level: never every object of every run
        key = run_prefix + "summary.json"
        if store.exists(key):
            runs.append(store.get_json(key))
    runs.sort(key=lambda r: r.get("finished_at", ""), reverse=True)
    batches = sorted(read_batches(store), key=lambda b: b.get("pushed_at", ""), reverse=True)
    consensus = sorted(_read_jsons(store, "consensus/"), key=lambda c: c.get("decided_at", ""), reverse=True)
    releases = sorted(_read_jsons(store, "releases/"), key=lambda r: r.get("released_at", ""), reverse=True)
    return {"runs": runs, "batches": batches, "consensus": consensus, "releases": releases}


def batch_progress(client: Any, project_id: int, batch: str, required: int = 4) -> dict[str, int]:
    """Tasks of a batch by number of distinct annotators (``{"0": n0, ..., "4": n4}``)."""
    from pipelines.annotation.completion import summarize_completion

    summary = summarize_completion(client.iter_tasks(project_id, batch=batch, fields="all"), required)
    hist: dict[str, int] = {}
    for n in summary.annotators_per_task.values():
        k = str(min(n, required))
        hist[k] = hist.get(k, 0) + 1
    return hist


def iter_accepted(store: ObjectStore) -> Iterable[str]:
    return (k for k in sorted(store.list("consensus/")) if k.endswith("/consensus.parquet"))
