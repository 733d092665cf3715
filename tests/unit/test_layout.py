"""The bucket's key layout, pinned: every key family of :mod:`pipelines.store.layout` with one example.

Stored data of earlier runs is found by these keys, so a change here must be deliberate (and come
with a migration). Each expected string below is what the code wrote before the layout moved into
one module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipelines.config import StoreConfig
from pipelines.store.layout import (
    SHARD_GLOB,
    BucketLayout,
    KeyError_,
    RunKeys,
    batch_id_for,
    dvc_remote_object,
    safe_key,
    shard_file,
    shard_label,
    shard_of,
)

pytestmark = pytest.mark.unit

L = BucketLayout(StoreConfig())
R = L.run("scheduled__2026-03-01T00:00:00+00:00")
RUN = "runs/scheduled__2026-03-01T00_00_00+00_00"

LAYOUT: list[tuple[str, Callable[[], object], object]] = [
    # runs
    ("RunKeys.prefix", lambda: R.prefix, f"{RUN}/"),
    ("RunKeys.table", lambda: R.table("manifest", 3), f"{RUN}/manifest/shard-00003.parquet"),
    ("RunKeys.stage_file", lambda: R.stage_file("ingest", "plan.json"), f"{RUN}/ingest/plan.json"),
    ("RunKeys.stage_prefix", lambda: R.stage_prefix("questions"), f"{RUN}/questions/"),
    ("RunKeys.rejects", lambda: R.rejects("segment", 12), f"{RUN}/rejects/segment/shard-00012.parquet"),
    ("RunKeys.stats", lambda: R.stats("detect", 0), f"{RUN}/stats/detect/shard-00000.json"),
    ("RunKeys.stats_prefix", lambda: R.stats_prefix(), f"{RUN}/stats/"),
    ("RunKeys.stats_stage", lambda: R.stats_stage(f"{RUN}/stats/detect/shard-00000.json"), "detect"),
    ("RunKeys.plan", lambda: R.plan(), f"{RUN}/ingest/plan.json"),
    ("RunKeys.shard_document", lambda: R.shard_document("ingest", "shipped", 3),
     f"{RUN}/ingest/shipped/shard-00003.json"),
    ("RunKeys.validation", lambda: R.validation("x.json"), f"{RUN}/validation/x.json"),
    ("RunKeys.validation_step", lambda: R.validation_step("shard-00001", ["manifest", "quarantine"]),
     f"{RUN}/validation/shard-00001.manifest+quarantine.json"),
    ("RunKeys.validation_result", lambda: R.validation_result("questions", "shard-00001"),
     f"{RUN}/validation/questions/shard-00001.json"),
    ("RunKeys.validation_result (no label)", lambda: R.validation_result("questions", None),
     f"{RUN}/validation/questions/result.json"),
    ("RunKeys.datadocs_prefix", lambda: R.datadocs_prefix(), f"{RUN}/datadocs/"),
    ("RunKeys.datadocs_index", lambda: R.datadocs_index(), f"{RUN}/datadocs/index.html"),
    ("RunKeys.datadocs_site", lambda: R.datadocs_site("instances", "shard-00002"),
     f"{RUN}/datadocs/instances/shard-00002/"),
    ("RunKeys.datadocs_site (no label)", lambda: R.datadocs_site("instances", None), f"{RUN}/datadocs/instances/"),
    ("RunKeys.datadocs_site_file", lambda: R.datadocs_site_file("instances", "shard-00002", "validations/a b.html"),
     f"{RUN}/datadocs/instances/shard-00002/validations/a_b.html"),
    ("RunKeys.datadocs_sites_root", lambda: R.datadocs_sites_root(), f"{RUN}/datadocs/_sites/"),
    ("RunKeys.datadocs_site_marker", lambda: R.datadocs_site_marker("instances", "shard-00002"),
     f"{RUN}/datadocs/_sites/instances/shard-00002"),
    ("RunKeys.datadocs_site_of_marker", lambda: R.datadocs_site_of_marker(f"{RUN}/datadocs/_sites/instances/s-1"),
     "instances/s-1"),
    ("RunKeys.summary", lambda: R.summary(), f"{RUN}/summary.json"),
    # records and their indexes
    ("BucketLayout.runs_root", lambda: L.runs_root, "runs/"),
    ("BucketLayout.runs_index_root", lambda: L.runs_index_root, "runs/_index/"),
    ("BucketLayout.run_summary_of", lambda: L.run_summary_of("runs/r1/"), "runs/r1/summary.json"),
    ("BucketLayout.record_prefixes", lambda: L.record_prefixes, ("runs", "batches", "consensus", "releases")),
    ("BucketLayout.records_root", lambda: L.records_root("batches"), "batches/"),
    ("BucketLayout.document_prefixes", lambda: L.document_prefixes, ("runs/", "releases/")),
    ("BucketLayout.image_prefixes", lambda: L.image_prefixes, ("inputs/", "runs/")),
    ("BucketLayout.batch", lambda: L.batch("r1.shard-00003"), "batches/r1.shard-00003.json"),
    ("BucketLayout.open_marker", lambda: L.open_marker("r1.shard-00003"), "batches/_index/open/r1.shard-00003"),
    ("BucketLayout.open_markers_root", lambda: L.open_markers_root(), "batches/_index/open/"),
    ("BucketLayout.consensus", lambda: L.consensus("r1.shard-00003"), "consensus/r1.shard-00003.json"),
    ("BucketLayout.consensus_table", lambda: L.consensus_table("r1.shard-00003", "audit"),
     "consensus/r1.shard-00003/audit.parquet"),
    ("BucketLayout.consensus_tables", lambda: L.consensus_tables("r1.shard-00003"), "consensus/r1.shard-00003/"),
    ("BucketLayout.release", lambda: L.release("v2026.03.01"), "releases/v2026.03.01.json"),
    ("BucketLayout.release_file", lambda: L.release_file("v2026.03.01", "card", "answers.png"),
     "releases/v2026.03.01/card/answers.png"),
    ("BucketLayout.index_built", lambda: L.index_built("consensus"), "consensus/_index/built.json"),
    ("BucketLayout.newest_first_root", lambda: L.newest_first_root("releases"), "releases/_index/newest-first/"),
    ("BucketLayout.newest_first_marker", lambda: L.newest_first_marker("runs", "8227267200000", "manual__1:2"),
     "runs/_index/newest-first/8227267200000.manual__1_2"),
    # inputs
    ("BucketLayout.input_prefix", lambda: L.input_prefix("incoming"), "inputs/incoming"),
    ("BucketLayout.input_prefix (already prefixed)", lambda: L.input_prefix("inputs/incoming"), "inputs/incoming"),
    ("BucketLayout.input_key", lambda: L.input_key("demo", "images/a.jpg"), "inputs/demo/images/a.jpg"),
    ("BucketLayout.input_uri", lambda: L.input_uri("hopchain", "incoming"), "s3://hopchain/inputs/incoming"),
    ("BucketLayout.coco_instances", lambda: L.coco_instances("inputs/demo"), "inputs/demo/instances.json"),
    # annotation journal and annotators
    ("BucketLayout.journal_root", lambda: L.journal_root, "annotation-journal"),
    ("BucketLayout.journal_folder", lambda: L.journal_folder(L.journal_root, 7, "r1.shard-00003"),
     "annotation-journal/7/r1.shard-00003/"),
    ("BucketLayout.journal_segment", lambda: L.journal_segment("annotation-journal/7/b/", "20260301T000000000000Z", "ab"),
     "annotation-journal/7/b/20260301T000000000000Z-ab.jsonl"),
    ("BucketLayout.journal_segment (checkpoint)",
     lambda: L.journal_segment("annotation-journal/7/b/", "20260301T000000000000Z", "ab", checkpoint=True),
     "annotation-journal/7/b/20260301T000000000000Z-ab.ckpt.jsonl"),
    ("BucketLayout.annotators_registry", lambda: L.annotators_registry, "annotators/registry.json"),
    ("BucketLayout.pseudonym_key", lambda: L.pseudonym_key, "annotators/pseudonym.key"),
    ("BucketLayout.image_key_probe", lambda: L.image_key_probe, "annotators/image-key-probe"),
    # shards, batches, the DVC remote
    ("shard_label", lambda: shard_label(7), "shard-00007"),
    ("shard_file", lambda: shard_file(7), "shard-00007.parquet"),
    ("shard_file (json)", lambda: shard_file(7, ".json"), "shard-00007.json"),
    ("shard_of", lambda: shard_of("runs/r/questions/shard-00042.parquet"), 42),
    ("shard_of (other)", lambda: shard_of("runs/r/ingest/plan.json"), None),
    ("SHARD_GLOB", lambda: SHARD_GLOB, "shard-*.parquet"),
    ("batch_id_for", lambda: batch_id_for("manual__2026-03-01T00:00:00+00:00", 3),
     "manual__2026-03-01T00_00_00_00_00.shard-00003"),
    ("dvc_remote_object", lambda: dvc_remote_object("releases/", "0123456789abcdef0123456789abcdef"),
     "releases/files/md5/01/23456789abcdef0123456789abcdef"),
]


@pytest.mark.parametrize(("name", "build", "expected"), LAYOUT, ids=[n for n, _, _ in LAYOUT])
def test_every_key_family_is_pinned(name: str, build: Callable[[], object], expected: object) -> None:
    assert build() == expected


def test_the_table_covers_every_public_key_builder() -> None:
    """A key family added to the layout without a row here fails: the table is the whole layout."""
    pinned = {n.split(" (")[0] for n, _, _ in LAYOUT}
    public = {f"{cls.__name__}.{a}" for cls in (RunKeys, BucketLayout) for a in vars(cls) if not a.startswith("_")}
    public |= {"shard_label", "shard_file", "shard_of", "SHARD_GLOB", "batch_id_for", "dvc_remote_object"}
    public -= {"BucketLayout.run"}  # returns RunKeys, pinned row by row above
    assert public - pinned == set()


def test_prefixes_follow_the_configuration() -> None:
    lay = BucketLayout(StoreConfig(runs_prefix="/team-a/runs/", batches_prefix="b", journal_prefix="j/"))
    assert lay.run("r").table("questions", 1) == "team-a/runs/r/questions/shard-00001.parquet"
    assert lay.batch("x") == "b/x.json"
    assert lay.journal_folder(lay.journal_root, 1, "x") == "j/1/x/"


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "..\\..\\x", "a/../../b"])
def test_a_user_supplied_name_never_leaves_its_prefix(hostile: str) -> None:
    for key in (L.input_key("demo", hostile), R.table(hostile, 1), L.release_file("v1", hostile)):
        assert ".." not in key.split("/")
    assert L.input_key("demo", hostile).startswith("inputs/demo/")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(KeyError_):
        safe_key("runs", "..", "", ".")


def test_the_ledger_and_the_store_still_export_what_they_did() -> None:
    from pipelines.store import run_key
    from pipelines.store import safe_key as store_safe_key
    from pipelines.store.ledger import Ledger
    from pipelines.store.ledger import RunKeys as LedgerRunKeys
    from pipelines.store.ledger import batch_id_for as ledger_batch_id_for

    assert LedgerRunKeys is RunKeys and ledger_batch_id_for is batch_id_for and store_safe_key is safe_key
    assert run_key("runs", "r", "questions", 2) == "runs/r/questions/shard-00002.parquet"
    assert run_key("runs", "r", "ingest", name="plan.json") == "runs/r/ingest/plan.json"
    ledger = Ledger(store=None, layout=StoreConfig())  # type: ignore[arg-type]  # keys touch no store
    assert ledger.batch_key("b") == "batches/b.json" and ledger.annotators_key == "annotators/registry.json"
    assert ledger.run("r").summary() == "runs/r/summary.json"


def test_newest_first_markers_sort_newest_first() -> None:
    from pipelines.store.ledger import NewestFirst

    index = NewestFirst(store=None, prefix="runs")  # type: ignore[arg-type]
    old, new = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    assert index.key("b", new) < index.key("a", old)
    assert index.key("a", old).startswith("runs/_index/newest-first/")
