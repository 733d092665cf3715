"""The release as the platform runs it: every batch decided so far → one cumulative DVC release.

A release is the dataset as of now: all accepted questions of every decided batch (a batch
decided again after a carry-over replaces its earlier decision). The tables of those batches are
gathered from the ledger (:mod:`pipelines.store.ledger`) into one snapshot, :func:`pipelines.release.registry.publish`
builds, pushes, verifies and tags it, and the ledger gets a :class:`~pipelines.store.ledger.ReleaseRecord` plus the
dataset card (linked from the Airflow plugin page).
"""

from __future__ import annotations

import logging
import mimetypes
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import Params
from pipelines.contracts import SIMULATED_SOURCES, conform
from pipelines.contracts.rejects import reason_label
from pipelines.store import ObjectStore
from pipelines.store.ledger import Ledger, ReleaseRecord, utc_now

if TYPE_CHECKING:
    from pipelines.runner import RunEnv

log = logging.getLogger(__name__)


#: Answers that did not count, per question (released as ``data/meta/part-NNNNN/uncounted.parquet``):
#: only the reason code, no account.
UNCOUNTED = pa.schema([("question_id", pa.string()), ("code", pa.string())])


class NothingToRelease(RuntimeError):
    """No batch has been decided yet."""


def gather_tables(ledger: Ledger, simulated: dict[str, list[str]] | None = None
                  ) -> tuple[dict[str, pa.Table], list[str], datetime | None]:
    """Consensus, questions, instances and manifest of the batches decided since the last release,
    their run ids, and the newest decision time read. Reads only those batches: the release appends
    them to the registry's data, which already holds everything before (O(new), not O(history)).

    ``simulated``, when given, gets ``batch id -> question ids`` of the accepted questions whose answers
    came (partly) from simulated annotators (``answers_source`` simulated or mixed)."""
    store = ledger.store
    parts: dict[str, list[pa.Table]] = {"consensus": [], "questions": [], "instances": [], "manifest": []}
    extras: dict[str, list[pa.Table]] = {"audit": [], "uncounted": []}
    run_ids: set[str] = set()
    decisions = ledger.decided_since_release()
    for decision in decisions:
        batch = ledger.batch(decision.batch_id)
        key = ledger.consensus_table_key(decision.batch_id, "consensus")
        if batch is None or not batch.questions or not store.exists(key):
            continue
        run = ledger.run(batch.run_id)
        consensus = store.get_table(key, "consensus")
        parts["consensus"].append(consensus)
        if simulated is not None:  # accepted questions whose answers came (partly) from the simulation
            ids = [r["question_id"] for r in consensus.select(["question_id", "status", "answers_source"]).to_pylist()
                   if r["status"] == "accepted" and r["answers_source"] in SIMULATED_SOURCES]
            if ids:
                simulated[decision.batch_id] = ids
        parts["questions"].append(store.get_table(batch.questions_key, "questions"))
        parts["instances"].append(store.get_table(run.table("instances", batch.shard), "instances"))
        parts["manifest"].append(store.get_table(run.table("manifest", batch.shard), "manifest"))
        run_ids.add(batch.run_id)
        if "audit" in decision.keys:  # decisions since issue 26: who answered, what did not count
            extras["audit"].append(store.get_table(decision.keys["audit"]))
            rejects = store.get_table(decision.keys["rejects"], "rejects")
            uncounted = [{"question_id": r["item_id"].split("/", 1)[0], "code": r["code"]}
                         for r in rejects.select(["item_id", "code"]).to_pylist()
                         if reason_label(r["code"]).family == "integrity"]
            extras["uncounted"].append(pa.Table.from_pylist(uncounted, schema=UNCOUNTED))
    if not parts["consensus"]:
        raise NothingToRelease("no batch decided since the last release: nothing to release")
    tables = {}
    for name, tabs in parts.items():
        t = pa.concat_tables([conform(x, name) for x in tabs])
        # the same image (or question) can come from several runs: keep one row per id
        ids = {"consensus": ["question_id"], "questions": ["question_id"], "manifest": ["image_id"],
               "instances": ["image_id", "instance_id"]}[name]
        tables[name] = _dedupe(t, ids)
    for name, tabs in extras.items():
        if tabs:
            tables[name] = pa.concat_tables(tabs, promote_options="default")
    return tables, sorted(run_ids), max(d.decided_at for d in decisions)


def _dedupe(table: pa.Table, keys: list[str]) -> pa.Table:
    seen: set[tuple] = set()
    keep = []
    cols = [table[k].to_pylist() for k in keys]
    for i, key in enumerate(zip(*cols, strict=True)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table.take(pa.array(keep, type=pa.int64())) if len(keep) != len(table) else table


def simulated_refusal(simulated: dict[str, list[str]], shown: int = 10) -> str:
    """The one-line refusal of a release holding simulated answers: how many questions, which batches."""
    from pipelines.config import SIMULATED_ENV

    questions = {q for ids in simulated.values() for q in ids}
    batches = sorted(simulated)
    listed = ", ".join(batches[:shown]) + (f" and {len(batches) - shown} more" if len(batches) > shown else "")
    return (f"release refused: {len(questions)} accepted questions carry simulated answers ({len(batches)} batches: "
            f"{listed}), and this deployment forbids simulated annotators ({SIMULATED_ENV} is not 'allow'); "
            "only people's answers are released here")


def release_from_store(params: Params, store: ObjectStore, run_id: str, home: Path) -> ReleaseRecord:
    """Publish the cumulative release; returns its ledger record (tag, counts, card key).

    ``home`` is the caller's work folder: the registry checkout goes to
    ``<home>/release/<release.name>`` and, unless ``release.registry_url`` is set, the registry is
    the bare repository ``<home>/registry.git``.
    """
    from pipelines.config import Refused, simulated_allowed
    from pipelines.release.registry import default_registry_url, publish
    from pipelines.release.snapshot import ReleaseSources

    ledger = Ledger(store, params.store)
    latest = ledger.latest_release()
    simulated: dict[str, list[str]] = {}
    try:
        tables, run_ids, through = gather_tables(ledger, simulated)
    except NothingToRelease:
        if latest is None:
            raise
        # Nothing decided since the last release: trainers keep pulling that tag.
        log.info("release: nothing decided since %s; no new tag", latest.tag)
        return latest.model_copy(update={"reused": True, "released_by": run_id})
    if simulated and not simulated_allowed():
        raise Refused(simulated_refusal(simulated))
    digest = accepted_digest(tables["consensus"])
    with tempfile.TemporaryDirectory(prefix="hopchain-release-") as tmp:
        paths = {}
        for name, table in tables.items():
            paths[name] = str(Path(tmp) / f"{name}.parquet")
            pq.write_table(table, paths[name])
        sources = ReleaseSources(paths["consensus"], paths["questions"], paths["instances"], paths["manifest"],
                                 images_from=None, run_ids=tuple(run_ids), audit=paths.get("audit"),
                                 uncounted=paths.get("uncounted"))
        registry = default_registry_url(params, home)
        workdir = home / "release" / params.release.name
        result = publish(params, sources, creds=store.creds, workdir=workdir, registry_url=registry,
                         progress=lambda m: log.info("release: %s", m))
    card_key = _upload_card(ledger, workdir / "checkout", result.tag)
    released = result.metrics.get("released", {})
    record = ReleaseRecord(
        tag=result.tag, registry=registry, commit=result.commit, questions=released.get("questions"),
        images=released.get("images"), metrics=result.metrics, card=card_key, run_ids=run_ids,
        accepted_digest=digest, released_by=run_id, reused=result.reused, pushed_files=result.pushed_files,
        released_at=utc_now(), decisions_through=through,
    )
    ledger.put_release(record)
    return record


def accepted_digest(consensus: pa.Table) -> str:
    """Fingerprint of the accepted set: sha256 over sorted (question_id, agreed answer)."""
    import hashlib

    rows = sorted((r["question_id"], r["agreed_answer"] or "") for r in consensus.to_pylist()
                  if r["status"] == "accepted")
    return hashlib.sha256("\n".join(f"{q}\t{a}" for q, a in rows).encode()).hexdigest()


def _upload_card(ledger: Ledger, wc: Path, tag: str) -> str | None:
    """Copy the dataset card to ``<releases>/<tag>/``: ``README.md``, its plots under ``card/``, and
    ``index.html`` (the Markdown rendered, its YAML metadata shown as a table). Returns the page key."""
    readme = wc / "README.md"
    if not readme.is_file():
        return None
    files = [readme, *sorted(p for p in (wc / "card").rglob("*") if p.is_file())]
    for f in files:
        ledger.store.put_bytes(ledger.release_file_key(tag, str(f.relative_to(wc))), f.read_bytes(),
                               mimetypes.guess_type(f.name)[0] or "application/octet-stream")
    key = ledger.release_file_key(tag, "index.html")
    ledger.store.put_bytes(key, _markdown_page(readme.read_text(), tag).encode(), "text/html")
    return key


def _markdown_page(md: str, tag: str) -> str:
    """The card's Markdown as an HTML page (mistune, with tables, raw HTML escaped; the page from
    ``templates/card_page.html``, autoescaped); its YAML front matter (the ``configs:`` metadata
    ``datasets`` reads) is shown as a small table, not as stray text."""
    import jinja2
    import mistune
    import yaml
    from markupsafe import Markup

    meta: dict[str, Any] = {}
    if md.startswith("---\n"):
        head, sep, rest = md[4:].partition("\n---\n")
        if sep:
            loaded = yaml.safe_load(head)
            meta, md = (loaded if isinstance(loaded, dict) else {}), rest
    # mistune escapes the Markdown's own HTML (escape=True): its output is markup, everything else is data
    body = Markup(mistune.create_markdown(escape=True, plugins=["table"])(md))
    env = jinja2.Environment(loader=jinja2.PackageLoader("pipelines.release", "templates"),
                             autoescape=jinja2.select_autoescape(("html",)), auto_reload=False)
    return env.get_template("card_page.html").render(
        tag=tag, meta=[(str(k), yaml.safe_dump(v).strip()) for k, v in meta.items()], body=body)


def release(env: RunEnv, home: Path | None = None) -> ReleaseRecord:
    """The release task of a run (not shard-shaped: it reads every decision so far): the cumulative release
    (:func:`release_from_store`), with its registry checkout and default registry under ``home`` (default:
    this machine's :func:`~pipelines.config.work_home`)."""
    from pipelines.config import work_home

    return release_from_store(env.params, env.store, env.run_id, home or work_home(env.params))
