"""The annotation tasks: what the DAGs do with Label Studio, as plain functions of the run (:class:`RunEnv`).

These are not table stages, and are not forced into the shard contract of :mod:`pipelines.runner`:

* :func:`push` takes one shard's questions but writes no table: its output is a Label Studio batch and
  its ledger record (:class:`~pipelines.store.ledger.BatchRecord`, kept on a retry);
* :func:`open_batches`, :func:`simulate_annotators`, :func:`tend` and :func:`decide` work on the open
  batches of every run so far (the ledger), not on a shard of this run;
* :func:`decide` writes each batch's tables under the consensus keys of the ledger and checks them.

Each returns a typed record (pydantic) that the Airflow side turns into JSON for XCom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from functools import partial
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from pipelines.contracts import SCHEMAS
from pipelines.runner import RunEnv, validate, write_docs_index
from pipelines.store.ledger import BatchRecord, ConsensusRecord, batch_id_for, utc_now

log = logging.getLogger(__name__)

__all__ = ["Decisions", "OpenBatches", "decide", "open_batches", "push", "pushed_batches", "simulate_annotators",
           "tend"]


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


def push(env: RunEnv, shard: int) -> BatchRecord:
    """The shard's questions → one Label Studio batch; its ledger record (kept on a retry).

    Reads only the tasks of the shard's images (:func:`pipelines.annotation.push.push_questions`):
    the record's ``tasks_fetched`` says how many."""
    from pipelines.annotation.project import ensure_project
    from pipelines.annotation.push import push_questions

    questions = env.read_table("questions", shard)
    batch_id = batch_id_for(env.run_id, shard)
    cfg = env.params.annotation
    now = utc_now()
    if not len(questions):
        record = BatchRecord(batch_id=batch_id, run_id=env.run_id, shard=shard, questions=0, project_id=None,
                             status="closed", pushed_at=now, deadline=now,
                             questions_key=env.keys.table("questions", shard))
        env.ledger.put_batch(record)
        return record
    manifest = env.read_table("manifest", shard)
    with env.client() as client:
        project = ensure_project(client, cfg.project_title, cfg.annotators_required, cfg.handout)
        hold = project_hold(env, client, int(project["id"]))
        if hold is not None:  # never hand new questions to a project that is not as the platform set it
            from pipelines.config import Refused

            raise Refused(f"push refused: {hold} (look, then `hopchain project repair`, then clear this task)")
        uris = dict(zip(manifest["image_id"].to_pylist(), manifest["uri"].to_pylist(), strict=True))
        image_refs, image_ref = _image_refs(env, client, int(project["id"]), uris)
        report = push_questions(client, int(project["id"]), questions.to_pylist(), image_ref, batch_id,
                                cfg.import_batch_size)
    earlier = env.ledger.batch(batch_id)  # a retried push keeps the first push time and deadline
    bounds = [b for b in (report.first_task_id, earlier.first_task_id if earlier else None) if b is not None]
    record = BatchRecord(
        batch_id=batch_id, run_id=env.run_id, shard=shard, questions=len(questions),
        project_id=int(project["id"]), status="open",
        pushed_at=earlier.pushed_at if earlier else now,
        deadline=earlier.deadline if earlier else now + timedelta(minutes=cfg.deadline_minutes),
        questions_key=env.keys.table("questions", shard), created_tasks=report.created,
        already_present=report.already_present, tasks_fetched=report.tasks_fetched, image_refs=image_refs,
        first_task_id=min(bounds) if bounds else None,  # the id bound of every read of the batch
    )
    env.ledger.put_batch(record)
    return record


def _image_refs(env: RunEnv, client: Any, project_id: int, uris: dict[str, str]) -> tuple[str, Callable[[str], str]]:
    """How the batch's tasks reference images: ``"s3"``, ``s3://`` URIs that the project's image storage
    resolves on every open, through Label Studio's storage proxy (no signed URL reaches a browser).

    Fails closed (:class:`~pipelines.annotation.image_key.ImageKeyRefused`, one line, before anything
    is imported or recorded, so the batch is pushed again once fixed): without an image key, with one
    that cannot read or can write (:func:`~pipelines.annotation.image_key.verify_read_only`, against the
    real store), or when Label Studio refuses the storage. Label Studio never gets the platform's key,
    and no URL is signed at push time."""
    from pipelines.annotation.client import LabelStudioError
    from pipelines.annotation.image_key import ImageKeyRefused, ReaderKey, reader_store, verify_read_only
    from pipelines.annotation.project import ImageStorage, ensure_image_storage
    from pipelines.annotation.push import s3_image_refs

    reader = env.image_reader() if env.image_reader is not None else None
    if reader is None:
        raise ImageKeyRefused("push refused: no read-only image key for Label Studio (Airflow connection "
                              "hopchain_s3_reader; docker/.env HOPCHAIN_S3_READER_ACCESS_KEY / _SECRET_KEY): "
                              "it never gets the platform's read-write key")
    verify_read_only(env.store, reader_store(reader, env.store.bucket), env.ledger.keys.image_key_probe)
    endpoint = reader.storage_endpoint if isinstance(reader, ReaderKey) else reader.url
    storage = ImageStorage(env.store.bucket, endpoint, reader.access_key, reader.secret_key, reader.region)
    try:
        ensure_image_storage(client, project_id, storage)
    except LabelStudioError as err:
        if err.status_code is None or err.status_code >= 500:
            raise
        detail = " ".join(str(err.body).split())[:160]
        raise ImageKeyRefused(f"push refused: Label Studio refused the image storage (HTTP {err.status_code}: "
                              f"{detail}); give Label Studio the store as S3_ENDPOINT (docs/deployment.md)") from None
    return "s3", s3_image_refs(env.store.bucket, uris)


def pushed_batches(env: RunEnv) -> list[BatchRecord]:
    """Open batches this run pushed to Label Studio."""
    return [b for b in env.ledger.open_batches() if b.run_id == env.run_id]


def open_batches(env: RunEnv) -> OpenBatches:
    cfg = env.params.annotation
    return OpenBatches(batches=env.ledger.open_batches(), poll_interval_s=cfg.poll_interval_s,
                       annotators_required=cfg.annotators_required, handout=cfg.handout,
                       early_stop=cfg.early_stop)


def simulate_annotators(env: RunEnv, open_batches: OpenBatches | dict[str, Any]) -> dict[str, Any]:
    """Demo only: the simulated accounts answer every open batch through the real LS API.
    ``open_batches`` is :func:`open_batches`' result (or its JSON, as XCom carries it)."""
    from pipelines.annotation.registry import SIMULATED, save
    from pipelines.annotation.simulated import run_simulation, simulated_annotators
    from pipelines.annotation.tend import tend as tend_pass
    from pipelines.config import Refused, simulated_allowed

    if not simulated_allowed():
        raise Refused("simulated annotators are forbidden in this deployment (HOPCHAIN_SIMULATED_ANNOTATORS is "
                      "not 'allow'): their answers would be released as human ones")
    open_batches = OpenBatches.model_validate(open_batches)
    cfg = env.params.annotation
    sim = cfg.simulated
    done: dict[str, int] = {}
    # The labeling stream hands out tasks of every batch of a project, so the simulated
    # annotators get the answers of all open batches of that project at once.
    truths_by_project: dict[int, dict[str, Any]] = {}
    for b in open_batches.batches:
        if b.project_id is None:
            continue
        truths = truths_by_project.setdefault(b.project_id, {})
        for q in env.store.get_table(b.questions_key, "questions").to_pylist():
            truths[q["question_id"]] = q["answer"]
    with env.client() as client:
        annotators = simulated_annotators(client, client.token, sim.count)
        # the stand-ins are registered as what they are: their answers are released as "simulated"
        registry = load_registry(env)
        journal = open_journal(env)
        platform = {int(client.whoami()["id"])}
        if any([registry.register(int(a.client.whoami()["id"]), a.email, SIMULATED, platform)
                for a in annotators]):
            save(env.store, env.ledger.annotators_key, registry)
        try:
            for project_id, truths in truths_by_project.items():
                project_batches = [b for b in open_batches.batches if b.project_id == project_id]

                def handout(project_batches: list[BatchRecord] = project_batches) -> bool:
                    # what hopchain_labeling's tend does on its schedule, while these stand-ins work
                    report = tend_pass(client, _tending(env, client, project_batches, journal))
                    return report.complete == report.tasks and not report.held

                for email, n in run_simulation(annotators, project_id, truths, sim.error_rate, sim.seed,
                                               handout=handout, handout_poll_s=sim.handout_poll_s).items():
                    done[email] = done.get(email, 0) + n
        finally:
            for a in annotators:
                a.client.close()
    return {"tasks_done": done}


def tend(env: RunEnv, open_batches: OpenBatches | dict[str, Any] | None = None) -> Any:
    """One pass of :func:`pipelines.annotation.tend.tend` over the open batches (default: the
    ledger's): journal new answers, find the ones that do not count, hand tasks out. Returns a
    :class:`~pipelines.annotation.tend.TendReport`. Idempotent; what DAG ``hopchain_labeling``
    runs on its schedule, each decision before it decides, and the demo's simulation."""
    from pipelines.annotation.tend import TendReport
    from pipelines.annotation.tend import tend as tend_pass

    batches = OpenBatches.model_validate(open_batches).batches if open_batches is not None \
        else env.ledger.open_batches()
    if not any(b.project_id is not None for b in batches):
        return TendReport()
    with env.client() as client:
        return tend_pass(client, _tending(env, client, batches, open_journal(env)))


# -- trust: journal, registered annotators, the project as the platform set it --------------------

def open_journal(env: RunEnv) -> Any:
    from pipelines.annotation.journal import Journal

    return Journal(env.store, env.ledger.journal_prefix)


def load_registry(env: RunEnv) -> Any:
    from pipelines.annotation.registry import load

    return load(env.store, env.ledger.annotators_key)


def pseudonymizer_of(env: RunEnv) -> Callable[[int | None], str]:
    """Label Studio user id → the stable pseudonym the audit tables and releases show."""
    from pipelines.annotation.registry import pseudonym_key, pseudonymizer

    return pseudonymizer(pseudonym_key(env.store, env.ledger.pseudonym_key_key))


def project_hold(env: RunEnv, client: Any, project_id: int) -> str | None:
    """One line saying how project ``project_id`` differs from what the platform set (its batches
    are then held), or None. A project that is gone (Label Studio's database lost) is not a
    hold: its batches are decided from the journal."""
    from pipelines.annotation.guard import check_project, expected_state, hold_reason

    cfg = env.params.annotation
    drifts = check_project(client, project_id,
                           expected_state(cfg.project_title, cfg.annotators_required, cfg.handout))
    drifts = [d for d in drifts if d.field != "project"]
    return hold_reason(drifts, project_id) if drifts else None


def _tending(env: RunEnv, client: Any, batches: list[BatchRecord], journal: Any) -> Any:
    from pipelines.annotation.tend import BatchRef, Tending

    cfg = env.params.annotation
    return Tending(
        batches=[BatchRef(int(b.project_id), b.batch_id, b.first_task_id) for b in batches if b.project_id is not None],
        required=cfg.annotators_required, handout=cfg.handout, early_stop=cfg.early_stop,
        journal=journal, registry=load_registry(env), platform=frozenset({int(client.whoami()["id"])}),
        check_project=partial(project_hold, env))


def decide(env: RunEnv, open_batches: OpenBatches | dict[str, Any]) -> Decisions:
    """Pull, journal, validate and decide every open batch; pending items stay open for the next run.
    ``open_batches`` is :func:`open_batches`' result (or its JSON, as XCom carries it).

    Each batch is decided from its own tasks (:func:`pipelines.annotation.pull.decide_batch`) as the
    annotation journal holds them, counting only the annotations of registered annotators that
    nobody changed after the platform first saw them. A batch whose project changed outside the
    platform is held (not decided). When Label Studio cannot serve the batch (down, or its
    database lost: the project is gone) the batch is decided from the journal alone.
    """
    from pipelines.annotation.client import LabelStudioError

    open_batches = OpenBatches.model_validate(open_batches)
    totals = Decisions(batches=[])
    registry = load_registry(env)
    names = {a.user_id: a.email for a in registry.annotators}
    journal, pseudonym = open_journal(env), pseudonymizer_of(env)
    with ExitStack() as stack:
        client: Any = None
        platform: frozenset[int] = frozenset()
        try:
            client = stack.enter_context(env.client())
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
                holds[b.project_id] = project_hold(env, client, b.project_id)
            reason = holds.get(b.project_id)
            if reason is not None:
                log.warning("batch %s held: %s", b.batch_id, reason)
                env.ledger.put_batch(b.model_copy(update={"held": reason}))
                totals.held[b.batch_id] = reason
                continue
            _decide_batch(env, client, b, registry, names, platform, totals, journal, pseudonym)
    write_docs_index(env)  # the consensus suites' sites of this run, now that every batch is decided
    return totals


def _decide_batch(env: RunEnv, client: Any, b: BatchRecord, registry: Any, names: dict[int, str],
                  platform: frozenset[int], totals: Decisions, journal: Any,
                  pseudonym: Callable[[int | None], str]) -> None:
    from pipelines.annotation.pull import decide_batch, decide_journaled

    cfg = env.params.annotation
    questions = env.store.get_table(b.questions_key, "questions")
    assert b.project_id is not None
    result = None
    if client is not None:
        try:
            result = decide_batch(client, b.project_id, b.batch_id, questions.to_pylist(),
                                  cfg.annotators_required, names, cfg.early_stop, cfg.handout,
                                  journal=journal, registry=registry, platform=platform,
                                  first_task_id=b.first_task_id)
        except LookupError as err:  # the project is gone (Label Studio's database lost)
            log.warning("batch %s: %s; deciding from the annotation journal alone", b.batch_id, err)
    if result is None:
        result = decide_journaled(journal.view(b.project_id, b.batch_id), questions.to_pylist(),
                                  cfg.annotators_required, names, cfg.early_stop, registry, platform)
        totals.from_journal.append(b.batch_id)
    tables = result.tables()
    tables["audit"] = result.audit_table(pseudonym)
    keys = {}
    for name, table in tables.items():
        keys[name] = env.ledger.consensus_table_key(b.batch_id, name)
        env.store.put_table(keys[name], table, name if name in SCHEMAS else None)
    validate(env, f"consensus-{b.batch_id}", [
        ("annotations", tables["annotations"], {"questions": questions}),
        ("consensus", tables["consensus"], {"questions": questions, "annotations": tables["annotations"]}),
    ])
    counts = result.consensus.status_counts()
    held_here = max(1, len(questions) - len(result.held_elsewhere))
    cost = result.consensus.cost(cfg.annotators_required)
    decision = ConsensusRecord(
        batch_id=b.batch_id, run_id=b.run_id, decided_by=env.run_id,
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
    env.ledger.put_consensus(decision)
    if decision.pending:
        # carried over: the next run waits for the rest with a fresh deadline
        batch = b.model_copy(update={
            "deadline": utc_now() + timedelta(minutes=cfg.deadline_minutes),
            "carried_over": b.carried_over + 1, "pending": decision.pending, "held": None})
    else:
        batch = b.model_copy(update={"status": "closed", "pending": 0, "held": None})
    env.ledger.put_batch(batch)
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
