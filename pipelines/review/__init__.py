"""The data side of the review workspace (the HopChain page in the Airflow UI): questions joined
with their consensus, the counted annotations and their hop programs; hop overlays drawn from the
stored RLE; per-annotator quality; trends per run and per release. No Airflow import here.

Bounded reads. Questions are read a batch at a time, newest batch first, through the ledger's
newest-first index (:meth:`~pipelines.store.ledger.Ledger.view`), and a page stops as soon as it holds
``per_page`` questions or has looked at ``max_batches`` batches. A :class:`Cursor` says where the next
page starts (index page, position in it, row in the batch), so page N costs what page 1 costs, whatever
the ledger holds. Each batch's joined rows are cached (:class:`Review` keeps the newest ``cache_batches``),
keyed by the batch's decision time, so a batch decided again is read again.

Units: boxes are COCO ``[x, y, w, h]`` pixels; masks are COCO compressed RLE of ``mask_height`` x
``mask_width`` pixels (contract ``instances``); times are seconds (``lead_time_s``) and UTC datetimes.
Images are read only from the platform bucket, under its inputs or runs prefix
(:meth:`Review.image_bytes`); anything else raises :class:`ImageRefused`.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import statistics
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from pipelines.contracts.rejects import DECISION_PENDING, DECISION_UNANIMOUS, REJECTION_FAMILIES, reason_label
from pipelines.reward import canonical_number
from pipelines.store.ledger import BatchRecord, ConsensusRecord, Ledger, NewestFirst, batch_id_for

__all__ = [
    "AnnotatorRow", "AnswerRow", "Cursor", "HopStep", "ImageRefused", "QuestionFilter", "QuestionPage",
    "QuestionRow", "Review", "TrendRow", "reason_code", "reason_kind", "render_overlay",
]

Status = Literal["accepted", "rejected", "pending"]
#: rejection reasons, by kind: the families of the ``decision.*`` rejection codes
#: (:data:`pipelines.contracts.rejects.REASONS`)
REASON_KINDS = REJECTION_FAMILIES
#: overlay colours, one per picked instance in turn (RGB); the fill is blended at :data:`OVERLAY_ALPHA`
PALETTE = ((255, 0, 255), (0, 200, 255), (255, 200, 0), (0, 255, 100), (255, 80, 0), (120, 80, 255))
OVERLAY_ALPHA = 0.55


class ImageRefused(ValueError):
    """An image or document outside the platform bucket's known prefixes: never served."""


#: the code of an accepted or pending question decided before ``reason_code`` was recorded (its status says it)
_STATUS_CODES = {"accepted": DECISION_UNANIMOUS, "pending": DECISION_PENDING}


def reason_code(status: str, code: str | None) -> str | None:
    """A consensus row's ``reason_code``; for a row decided before codes were recorded, the code its
    status implies (accepted: unanimous, pending: pending) or None (rejected: the kind was not recorded)."""
    return code or _STATUS_CODES.get(status)


def reason_kind(status: str, code: str | None) -> str:
    """The kind of a decision, from its code (:func:`pipelines.contracts.rejects.reason_label`): ``not answerable``,
    ``ambiguous``, ``disagreement`` for a rejected question, ``unanimous`` for an accepted one, ``pending``;
    ``unrecorded`` for a rejection decided before codes were recorded."""
    return reason_label(reason_code(status, code)).family


class AnswerRow(BaseModel):
    """One counted annotation of a question."""

    annotator: str
    answer: str | None
    verdict: str  # answerable | not answerable | ambiguous
    submitted_at: datetime | None
    lead_time_s: float | None = None  # seconds the annotator spent, when Label Studio reported it


class HopStep(BaseModel):
    """One hop of a question's program, as the trace shows it: ``value`` is the stored value (instance
    ids or a number); ``picked`` the instance ids drawn on the image for this hop (for a number hop: the
    instances of the hops it reads)."""

    index: int
    op: str
    args: dict[str, Any]
    inputs: list[int]
    kind: str
    value: Any
    value_type: str
    picked: list[int]


class QuestionRow(BaseModel):
    """One question with its batch, decision and answers (what one card of the browser shows)."""

    question_id: str
    batch_id: str
    run_id: str
    shard: int
    image_id: str
    question: str
    answer: str  # the generator's answer
    num_hops: int
    skeleton: str
    categories: list[str]
    hops: list[HopStep]
    status: Status
    reason: str  # the decision's sentence, as the consensus wrote it (shown, never parsed)
    reason_code: str | None  # decision.* (None: a rejection decided before codes were recorded)
    reason_kind: str  # the code's family (:func:`pipelines.contracts.rejects.reason_label`)
    agreed_answer: str | None = None
    matches_generated: bool | None = None
    answers: list[AnswerRow] = []


class QuestionFilter(BaseModel):
    """What the browser narrows to; an empty field matches everything."""

    run: str = ""
    batch: str = ""
    status: Literal["", "accepted", "rejected", "pending"] = ""
    reason: str = ""  # a reason kind (:data:`REASON_KINDS`)
    hops: int | None = None
    skeleton: str = ""
    category: str = ""

    def matches(self, q: QuestionRow) -> bool:
        return ((not self.status or q.status == self.status)
                and (not self.reason or q.reason_kind == self.reason)
                and (self.hops is None or q.num_hops == self.hops)
                and (not self.skeleton or q.skeleton == self.skeleton)
                and (not self.category or self.category in q.categories))


class Cursor(BaseModel):
    """Where a page starts: the ledger index page of batches, the batch's position in it, the row."""

    page: int = Field(0, ge=0)
    pos: int = Field(0, ge=0)
    row: int = Field(0, ge=0)

    def text(self) -> str:
        return f"{self.page}.{self.pos}.{self.row}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        m = re.fullmatch(r"(\d{1,9})\.(\d{1,9})\.(\d{1,9})", text or "")
        return cls(page=int(m[1]), pos=int(m[2]), row=int(m[3])) if m else cls()


class QuestionPage(BaseModel):
    questions: list[QuestionRow]
    next: Cursor | None  # None: no older question matches
    batches_read: int  # batches looked at for this page (the page's cost)
    exhausted_budget: bool = False  # stopped after max_batches before the page was full


class AnnotatorRow(BaseModel):
    """One annotator across the batches read: agreement with the consensus is agreement of their vote
    with the question's majority vote (> 50 % of the counted votes), as the decide step computes it."""

    annotator: str
    answered: int
    batches: int
    compared: int
    agreement: float | None
    accepted_answered: int  # their answers on accepted questions
    generator_agreement: float | None  # on accepted questions: their answer == the generator's
    median_lead_time_s: float | None
    flagged: bool = False
    flag_reason: str = ""


class TrendRow(BaseModel):
    """One run (questions it pushed, as decided so far) or one release."""

    label: str
    at: datetime
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    acceptance_rate: float | None = None  # accepted / (accepted + rejected)
    generator_precision: float | None = None  # accepted whose agreed answer is the generator's / accepted
    released: int | None = None
    reasons: dict[str, int] = {}
    annotations_per_accepted: float | None = None  # cost fields of issue 19, when the record has them
    annotations_saved: int | None = None


def _table(store: Any, key: str) -> pa.Table | None:
    """A Parquet object, or None when it does not exist."""
    if not store.exists(key):
        return None
    return pq.read_table(io.BytesIO(store.get_bytes(key)))


def _picked(hops: list[dict[str, Any]], i: int, depth: int = 0) -> list[int]:
    """The instance ids drawn for hop ``i``: its op's registered review overlay says whether they are
    the ids the hop yields (``value``) or those of the hops it reads (``inputs``)."""
    from pipelines.questions.ops import OPS

    spec = OPS.get(str(hops[i].get("op")))
    value = hops[i].get("value")
    if spec is not None and spec.overlay == "value":
        return sorted(int(v) for v in value) if isinstance(value, list) else []
    if depth > 6:
        return []
    out: set[int] = set()
    for j in hops[i].get("inputs") or []:
        if isinstance(j, int) and 0 <= j < i:
            out.update(_picked(hops, j, depth + 1))
    return sorted(out)


def _steps(hops_json: str) -> tuple[list[HopStep], str, list[str]]:
    """Hop steps, the program skeleton (:func:`pipelines.questions.program.skeleton`) and categories."""
    from pipelines.questions.ops import OPS
    from pipelines.questions.ops.spec import hop_categories
    from pipelines.questions.program import ProgramError, program_from_json, skeleton

    try:
        raw = json.loads(hops_json)
        program = program_from_json(raw)
    except (ValueError, ProgramError):
        return [], "unreadable", []
    steps = [HopStep(index=i, op=h.op, args=dict(h.args), inputs=list(h.inputs), kind=h.kind, value=h.value,
                     value_type=OPS[h.op].output if h.op in OPS else "?", picked=_picked(raw, i))
             for i, h in enumerate(program)]
    categories = sorted({c for h in program for c in hop_categories(h.args)})
    return steps, skeleton(program), categories


def join_batch(batch: BatchRecord, questions: pa.Table, consensus: pa.Table | None,
               annotations: pa.Table | None) -> list[QuestionRow]:
    """The questions of one batch joined with its consensus rows and counted annotations (by
    ``question_id``); a question without a consensus row is pending."""
    decided = {r["question_id"]: r for r in consensus.to_pylist()} if consensus is not None else {}
    answers: dict[str, list[AnswerRow]] = defaultdict(list)
    for a in annotations.to_pylist() if annotations is not None else []:
        verdict = a.get("verdict") or ("answerable" if a.get("answerable") else "not answerable")
        answers[a["question_id"]].append(AnswerRow(
            annotator=str(a.get("annotator") or ""), answer=a.get("answer"), verdict=verdict,
            submitted_at=a.get("submitted_at"), lead_time_s=a.get("lead_time_s")))
    out = []
    for q in questions.to_pylist():
        steps, skel, categories = _steps(q.get("hops") or "[]")
        c = decided.get(q["question_id"])
        status = c["status"] if c and c.get("status") in ("accepted", "rejected") else "pending"
        reason = (c.get("reason") if c else None) or ("not decided yet" if c is None else "")
        code = reason_code(status, c.get("reason_code") if c else None)
        out.append(QuestionRow(
            question_id=q["question_id"], batch_id=batch.batch_id, run_id=batch.run_id, shard=batch.shard,
            image_id=q["image_id"], question=q.get("question") or "", answer=str(q.get("answer")),
            num_hops=int(q.get("num_hops") or len(steps)), skeleton=skel, categories=categories, hops=steps,
            status=status, reason=reason, reason_code=code, reason_kind=reason_kind(status, code),
            agreed_answer=c.get("agreed_answer") if c else None,
            matches_generated=c.get("matches_generated") if c else None,
            answers=sorted(answers.get(q["question_id"], []),
                           key=lambda a: (a.submitted_at is None, a.submitted_at or datetime.min)),
        ))
    return out


def _vote(a: AnswerRow) -> str:
    return a.answer if a.verdict == "answerable" and a.answer is not None else a.verdict


def _generated(value: Any) -> str | None:
    try:
        return canonical_number(value)
    except ValueError:
        return None


def annotator_table(rows_by_batch: dict[str, list[QuestionRow]], flag_gap: float = 0.15,
                    min_answered: int = 5) -> list[AnnotatorRow]:
    """Per annotator over the given batches; ``flagged`` when their agreement with the consensus (or,
    on accepted questions, with the generator) is more than ``flag_gap`` below the median of the others
    (with at least ``min_answered`` answers)."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"answered": 0, "batches": set(), "compared": 0,
                                                          "agreed": 0, "acc": 0, "acc_gen": 0, "times": []})
    for batch_id, rows in rows_by_batch.items():
        for q in rows:
            votes = Counter(_vote(a) for a in q.answers)
            top, n = votes.most_common(1)[0] if votes else ("", 0)
            reference = top if n * 2 > len(q.answers) else None
            generated = _generated(q.answer)
            for a in q.answers:
                s = per[a.annotator]
                s["answered"] += 1
                s["batches"].add(batch_id)
                if reference is not None:
                    s["compared"] += 1
                    s["agreed"] += _vote(a) == reference
                if q.status == "accepted":
                    s["acc"] += 1
                    s["acc_gen"] += a.answer is not None and a.answer == generated
                if a.lead_time_s is not None:
                    s["times"].append(a.lead_time_s)
    out = [AnnotatorRow(
        annotator=name, answered=s["answered"], batches=len(s["batches"]), compared=s["compared"],
        agreement=s["agreed"] / s["compared"] if s["compared"] else None, accepted_answered=s["acc"],
        generator_agreement=s["acc_gen"] / s["acc"] if s["acc"] else None,
        median_lead_time_s=statistics.median(s["times"]) if s["times"] else None)
        for name, s in sorted(per.items())]
    for row in out:
        if row.answered < min_answered:
            continue
        reasons = []
        for field, label in (("agreement", "agreement with the consensus"),
                             ("generator_agreement", "agreement with the generator")):
            mine = getattr(row, field)
            others = [getattr(o, field) for o in out if o is not row and getattr(o, field) is not None
                      and o.answered >= min_answered]
            if mine is not None and others and mine < statistics.median(others) - flag_gap:
                reasons.append(f"{label} {mine:.0%} vs {statistics.median(others):.0%} for the others")
        row.flagged, row.flag_reason = bool(reasons), "; ".join(reasons)
    return out


def render_overlay(image: bytes, instances: list[dict[str, Any]], picked: list[int], max_side: int = 640) -> bytes:
    """The image with the ``picked`` instances drawn (PNG): each mask (decoded from its COCO RLE with
    pycocotools) filled with its :data:`PALETTE` colour blended at :data:`OVERLAY_ALPHA`, its box
    outlined and its id written at the box corner; then scaled so the longer side is ``max_side``."""
    import numpy as np
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    rgb = Image.open(io.BytesIO(image)).convert("RGB")
    by_id = {int(r["instance_id"]): r for r in instances}
    if picked:
        pixels = np.asarray(rgb, dtype=np.float32).copy()
        boxes = []
        for n, iid in enumerate(picked):
            row = by_id.get(int(iid))
            if row is None:
                continue
            colour = np.array(PALETTE[n % len(PALETTE)], dtype=np.float32)
            m = mask_utils.decode({"size": [int(row["mask_height"]), int(row["mask_width"])],
                                   "counts": str(row["mask_rle"]).encode()}).astype(bool)
            if m.shape != pixels.shape[:2]:
                m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(
                    (pixels.shape[1], pixels.shape[0]), Image.Resampling.NEAREST)) > 0
            pixels[m] = pixels[m] * (1 - OVERLAY_ALPHA) + colour * OVERLAY_ALPHA
            boxes.append((int(iid), row.get("bbox"), tuple(int(c) for c in colour)))
        rgb = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(rgb)
        width = max(2, round(max(rgb.size) / 300))
        for iid, bbox, outline in boxes:
            if bbox is None:
                continue
            x, y, w, h = (float(v) for v in bbox)
            draw.rectangle([x, y, x + w, y + h], outline=outline, width=width)
            draw.text((x + width + 1, y + width + 1), f"#{iid}", fill=outline)
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "PNG", optimize=False)
    return out.getvalue()


class _LRU:
    """A small least-recently-used cache, safe to share between the api-server's request threads (two
    threads missing the same key both compute it; the later one wins)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Review:
    """Reads what the review pages show, from one ledger. Cheap to construct; caches per batch."""

    def __init__(self, ledger: Ledger, cache_batches: int = 64, cache_images: int = 256,
                 index_page: int = 10) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.index_page = index_page
        self._batches: _LRU = _LRU(cache_batches)
        self._shards: _LRU = _LRU(8)
        self._pngs: _LRU = _LRU(cache_images)
        self._indexed = False

    # -- batches ---------------------------------------------------------------------------------
    def batch_rows(self, batch: BatchRecord, decision: ConsensusRecord | None = None,
                   decided: bool = False) -> list[QuestionRow]:
        """The joined rows of one batch (cached by batch id and decision time). ``decided``: the caller
        already looked up ``decision`` (None meaning undecided)."""
        if not decided:
            decision = self.ledger.decision(batch.batch_id)
        stamp = decision.decided_at.isoformat() if decision else "undecided"

        def load() -> list[QuestionRow]:
            questions = _table(self.store, batch.questions_key)
            if questions is None:
                return []
            keys = decision.keys if decision else {}
            consensus = _table(self.store, keys["consensus"]) if "consensus" in keys else None
            detail = keys.get("annotations_detail") or keys.get("annotations")
            return join_batch(batch, questions, consensus, _table(self.store, detail) if detail else None)

        return list(self._batches.get_or((batch.batch_id, stamp), load))

    def _newest(self, prefix: str, limit: int | None = None, skip: int = 0) -> Iterator[tuple[datetime, str]]:
        """``(time, id)`` of one kind of record, newest first, from the ledger's newest-first index (a
        listing only: no record is read). The first call builds the indexes of a ledger older than them."""
        if not self._indexed:
            self.ledger.view(per_page=1)
            self._indexed = True
        stop = None if limit is None else skip + limit
        return itertools.islice(NewestFirst(self.store, prefix).entries(), skip, stop)

    def recent_runs(self, n: int = 20) -> list[str]:
        """Ids of the newest ``n`` finished runs (one listing)."""
        return [run_id for _, run_id in self._newest(self.ledger.layout.runs_prefix, n)]

    def _batch_source(self, flt: QuestionFilter, start: Cursor) -> Iterator[tuple[Cursor, BatchRecord]]:
        """Batches newest first, each with the cursor of its first row, from ``start`` on."""
        if flt.batch or flt.run:
            if flt.batch:
                ids = [flt.batch]
            else:
                root = self.ledger.run(flt.run).prefix + "questions/"
                shards = sorted((int(m[1]) for k in self.store.list(root, recursive=False)
                                 if (m := re.search(r"shard-(\d+)\.parquet$", k))), reverse=True)
                ids = [batch_id_for(flt.run, s) for s in shards]
            for pos in range(start.pos, len(ids)):
                record = self.ledger.batch(ids[pos])
                if record is not None and (not flt.run or record.run_id == flt.run):
                    yield Cursor(page=0, pos=pos), record
            return
        first = start.page * self.index_page + start.pos
        for n, (at, batch_id) in enumerate(self._newest(self.ledger.layout.batches_prefix, skip=first), first):
            record = self.ledger.batch(batch_id)
            if record is None or abs(record.pushed_at.timestamp() - at.timestamp()) > 0.002:
                continue  # a stale marker (the record moved on): the index says so itself
            yield Cursor(page=n // self.index_page, pos=n % self.index_page), record

    def questions(self, flt: QuestionFilter, cursor: Cursor | None = None, per_page: int = 20,
                  max_batches: int = 40) -> QuestionPage:
        """One page of questions matching ``flt``, newest batch first, starting at ``cursor``."""
        start = cursor or Cursor()
        found: list[QuestionRow] = []
        read = 0
        for at, batch in self._batch_source(flt, start):
            if read >= max_batches:
                return QuestionPage(questions=found, next=at, batches_read=read, exhausted_budget=True)
            read += 1
            rows = self.batch_rows(batch)
            first = start.row if (at.page, at.pos) == (start.page, start.pos) else 0
            for i in range(first, len(rows)):
                if not flt.matches(rows[i]):
                    continue
                if len(found) == per_page:
                    return QuestionPage(questions=found, next=Cursor(page=at.page, pos=at.pos, row=i),
                                        batches_read=read)
                found.append(rows[i])
        return QuestionPage(questions=found, next=None, batches_read=read)

    def question(self, batch_id: str, question_id: str) -> QuestionRow | None:
        batch = self.ledger.batch(batch_id)
        if batch is None:
            return None
        return next((q for q in self.batch_rows(batch) if q.question_id == question_id), None)

    # -- images ----------------------------------------------------------------------------------
    def _shard(self, run_id: str, shard: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """Manifest rows by image id and instance rows by image id, of one run shard (cached)."""
        def load() -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
            keys = self.ledger.run(run_id)
            manifest = _table(self.store, keys.table("manifest", shard))
            instances = _table(self.store, keys.table("instances", shard))
            by_image: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in instances.to_pylist() if instances is not None else []:
                by_image[r["image_id"]].append(r)
            return ({r["image_id"]: r for r in manifest.to_pylist()} if manifest is not None else {}), dict(by_image)

        return self._shards.get_or((run_id, int(shard)), load)

    def allowed_key(self, uri: str) -> str:
        """The object key of an image ``uri`` when it is in the platform bucket under the inputs or runs
        prefix; raises :class:`ImageRefused` otherwise."""
        lay = self.ledger.layout
        m = re.fullmatch(r"s3://([^/]+)/(.+)", uri or "")
        if not m or m[1] != self.store.bucket:
            raise ImageRefused("image outside the platform bucket")
        key = m[2]
        prefixes = tuple(p.strip("/") + "/" for p in (lay.inputs_prefix, lay.runs_prefix))
        if ".." in key.split("/") or "\\" in key or not key.startswith(prefixes):
            raise ImageRefused("image outside the platform bucket's known prefixes")
        return key

    def image_bytes(self, run_id: str, shard: int, image_id: str) -> bytes:
        row = self._shard(run_id, shard)[0].get(image_id)
        if row is None:
            raise KeyError(f"image {image_id} is not in run {run_id} shard {shard}")
        return bytes(self.store.get_bytes(self.allowed_key(row["uri"])))

    def overlay(self, q: QuestionRow, hop: int | None, max_side: int = 640) -> bytes:
        """PNG of the question's image with hop ``hop``'s picked instances drawn (None: the plain image)."""
        picked = q.hops[hop].picked if hop is not None and 0 <= hop < len(q.hops) else []

        def make() -> bytes:
            instances = self._shard(q.run_id, q.shard)[1].get(q.image_id, [])
            return render_overlay(self.image_bytes(q.run_id, q.shard, q.image_id), instances, picked, max_side)

        return bytes(self._pngs.get_or((q.run_id, q.shard, q.image_id, tuple(picked), max_side), make))

    # -- annotators and trends -------------------------------------------------------------------
    def decided_batches(self, decisions: int = 30) -> list[tuple[ConsensusRecord, list[QuestionRow]]]:
        """The newest ``decisions`` decisions with their batches' joined rows (one index page)."""
        out = []
        for at, batch_id in self._newest(self.ledger.layout.consensus_prefix, decisions):
            d = self.ledger.decision(batch_id)
            batch = self.ledger.batch(batch_id)
            if d is not None and batch is not None and abs(d.decided_at.timestamp() - at.timestamp()) <= 0.002:
                out.append((d, self.batch_rows(batch, d, decided=True)))
        return out

    def annotators(self, decisions: int = 30, flag_gap: float = 0.15) -> list[AnnotatorRow]:
        return annotator_table({d.batch_id: rows for d, rows in self.decided_batches(decisions)}, flag_gap)

    def trends(self, decisions: int = 30, releases: int = 20) -> tuple[list[TrendRow], list[TrendRow]]:
        """Per run (of the newest ``decisions`` decisions, oldest first) and per release (oldest first)."""
        runs: dict[str, TrendRow] = {}
        precise: Counter[str] = Counter()
        costs: dict[str, list[float]] = defaultdict(list)
        for d, rows in self.decided_batches(decisions):
            t = runs.setdefault(d.run_id, TrendRow(label=d.run_id, at=d.decided_at))
            t.at = min(t.at, d.decided_at)
            t.accepted += d.accepted
            t.rejected += d.rejected
            t.pending += d.pending
            precise[d.run_id] += sum(1 for q in rows if q.status == "accepted" and q.matches_generated)
            for q in rows:
                if q.status == "rejected":
                    t.reasons[q.reason_kind] = t.reasons.get(q.reason_kind, 0) + 1
            per_acc = getattr(d, "annotations_per_accepted", None)
            saved = getattr(d, "annotations_saved", None)
            if per_acc is not None:
                costs[d.run_id].append(float(per_acc))
            if saved is not None:
                t.annotations_saved = (t.annotations_saved or 0) + int(saved)
        for run_id, t in runs.items():
            decided = t.accepted + t.rejected
            t.acceptance_rate = t.accepted / decided if decided else None
            t.generator_precision = precise[run_id] / t.accepted if t.accepted else None
            if costs[run_id]:
                t.annotations_per_accepted = statistics.fmean(costs[run_id])
        rel_rows = []
        for _, tag in self._newest(self.ledger.layout.releases_prefix, releases):
            r = self.ledger.release(tag)
            if r is None:
                continue
            m = r.metrics or {}
            con: dict[str, Any] = m["consensus"] if isinstance(m.get("consensus"), dict) else {}
            # issue 19's cost fields: metrics["annotation_cost"] (older releases: absent)
            cost: dict[str, Any] = m["annotation_cost"] if isinstance(m.get("annotation_cost"), dict) else {}
            rel_rows.append(TrendRow(
                label=r.tag, at=r.released_at, accepted=int(con.get("accepted") or 0),
                rejected=int(con.get("rejected") or 0), pending=int(con.get("pending") or 0),
                acceptance_rate=m.get("acceptance_rate"), generator_precision=m.get("generator_precision"),
                released=r.questions, annotations_per_accepted=cost.get("annotations_per_accepted"),
                annotations_saved=cost.get("annotations_saved")))
        return sorted(runs.values(), key=lambda t: t.at), sorted(rel_rows, key=lambda t: t.at)


def trend_plot(rows: list[TrendRow], what: Literal["rates", "released", "reasons"], title: str) -> bytes:
    """A PNG plot (matplotlib, Agg) of trend rows: ``rates`` (acceptance rate and generator precision),
    ``released`` (questions released) or ``reasons`` (rejections by reason kind, stacked)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), dpi=100)
    ax = fig.add_subplot()
    # run ids and tags are data: shortened, and "$" escaped so that matplotlib never reads them as mathtext
    labels = [(r.label if len(r.label) <= 18 else r.label[:8] + "…" + r.label[-8:]).replace("$", r"\$") for r in rows]
    xs = list(range(len(rows)))
    if what == "rates":
        for field, name, style in (("acceptance_rate", "acceptance rate", "o-"),
                                   ("generator_precision", "generator precision", "s--")):
            ys = [getattr(r, field) if getattr(r, field) is not None else float("nan") for r in rows]
            ax.plot(xs, ys, style, label=name)
        ax.set_ylim(0, 1.05)
        ax.legend(loc="lower left", fontsize=8)
    elif what == "released":
        ax.bar(xs, [r.released or 0 for r in rows], color="#4c72b0")
        ax.set_ylabel("questions")
    else:
        kinds = sorted({k for r in rows for k in r.reasons})
        bottom: list[float] = [0.0] * len(rows)
        for kind in kinds:
            ys = [r.reasons.get(kind, 0) for r in rows]
            ax.bar(xs, ys, bottom=bottom, label=kind)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        if kinds:
            ax.legend(fontsize=8)
        ax.set_ylabel("rejected questions")
    ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=7)
    ax.set_title(title, fontsize=10)
    if not rows:
        ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
