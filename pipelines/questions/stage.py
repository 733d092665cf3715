"""The questions stage: contract tables in (instances + manifest), contract tables out
(questions + rejects). :class:`QuestionsStage` is its stage contract (:mod:`pipelines.runner`), which the
Airflow tasks and the ``hopchain questions`` command run; :func:`run_questions` is the stage's work on
one shard's tables.

Every image is accounted for: it yields questions or a reject saying why not; every refused
instance, model output, balanced-out or too-easy question is a :class:`~pipelines.contracts.rejects.Reject`
with its dotted code (``scene.*``, ``image.*``, ``no_question.*``, ``balance.*``, the writer's
``parse.*``/``structure.*``/..., ``reach.few_candidates``, ``unstable.perception``, ``difficulty.*``,
``leakage.blind_solvable``); ``stats["rejects"]`` counts them by code, ``stats["stability"]`` gives the
share of candidates the stability check refused.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
from PIL import Image

from pipelines.config import QuestionsConfig
from pipelines.contracts import to_table
from pipelines.contracts.rejects import Reject, count_codes, rejects_table
from pipelines.questions.candidates import check_candidates
from pipelines.questions.generator import Question, generate, select_balanced
from pipelines.questions.program import Margins, ProgramError, margins_of
from pipelines.questions.report import question_report
from pipelines.questions.scene import Scene, question_reject, scenes_from_tables
from pipelines.questions.stability import UNSTABLE, Doubt, Perturbations, check_stable, trusting_stability
from pipelines.questions.variants import derive_variants
from pipelines.runner import RunEnv, Shard, ShardResult, StageBase
from pipelines.vlm import VLMBackend

log = logging.getLogger(__name__)

ImageLoader = Callable[[dict[str, Any]], Image.Image]


def load_local_image(manifest_row: dict[str, Any]) -> Image.Image:
    """Open a manifest image from a local path or ``file://`` URI (RGB)."""
    uri = manifest_row["uri"]
    parsed = urlparse(uri)
    path = Path(parsed.path) if parsed.scheme == "file" else Path(uri)
    if parsed.scheme not in ("", "file") or not path.is_file():
        raise FileNotFoundError(f"image not available locally: {uri}")
    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class StageResult:
    questions: pa.Table
    rejects: pa.Table
    stats: dict[str, Any] = field(default_factory=dict)


def run_questions(
    instances: pa.Table,
    manifest: pa.Table,
    cfg: QuestionsConfig,
    *,
    writer_backend: VLMBackend | None = None,
    solver_backend: VLMBackend | None = None,
    image_loader: ImageLoader = load_local_image,
) -> StageResult:
    """Questions for every image of ``manifest`` (see the module docstring).

    The stage is five steps over one :class:`_Work`: build the scenes, write the full questions (the
    program or the VLM writer), derive and balance the variants, calibrate against the solver, and
    account for every image left without a question. ``cfg.writer == "vlm"`` needs ``writer_backend``;
    ``cfg.difficulty.enabled`` needs ``solver_backend`` (both already ``setup()``). Deterministic for
    the program writer.
    """
    if cfg.writer == "vlm" and writer_backend is None:
        raise ValueError("questions.writer is 'vlm' but no writer backend was given")
    if cfg.difficulty.enabled and solver_backend is None:
        raise ValueError("questions.difficulty.enabled but no solver backend was given")
    with _heap_frozen():
        return _run_questions(instances, manifest, cfg, writer_backend, solver_backend, image_loader)


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep the collector's full passes off the objects the process held before the stage began.

    The stage allocates millions of short-lived objects (hop records, memo keys, caught errors); every
    full pass of the cyclic collector would also walk every older object of the process (modules,
    caches, the shard's rows). ``gc.freeze`` sets those aside for the run — with the memo's errors
    kept without tracebacks, about a third of the stage's CPU at 20 instances per image
    (bench/RESULTS.md, issue 29) — and ``gc.unfreeze`` hands them back
    to the oldest generation, so nothing is leaked: their cycles are collected as before, later."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_questions(
    instances: pa.Table,
    manifest: pa.Table,
    cfg: QuestionsConfig,
    writer_backend: VLMBackend | None,
    solver_backend: VLMBackend | None,
    image_loader: ImageLoader,
) -> StageResult:
    """:func:`run_questions`' five steps (arguments checked)."""
    work = _Work(cfg, manifest, image_loader)
    work.build_scenes(instances)
    if cfg.writer == "program":
        full = _program_questions(work)
    else:
        assert writer_backend is not None
        full = _vlm_questions(work, instances, writer_backend)
    questions = _with_variants(work, full)
    if solver_backend is not None and cfg.difficulty.enabled:
        questions = _calibrated(work, questions, solver_backend)
    _account_for_silent_images(work, questions)
    return work.result(questions)


class _Work:
    """What the steps of :func:`run_questions` share: the config, the margins, the scenes, the images
    (each read once, kept only when a later step needs it again), and the rejects and stats so far."""

    def __init__(self, cfg: QuestionsConfig, manifest: pa.Table, image_loader: ImageLoader) -> None:
        self.cfg = cfg
        self.margins: Margins = margins_of(cfg)
        self.manifest = manifest
        self._rows = {r["image_id"]: r for r in manifest.to_pylist()}
        self._load = image_loader
        self._keep = cfg.writer == "vlm" or cfg.difficulty.enabled
        self._loaded: dict[str, Image.Image] = {}
        self.scenes: list[Scene] = []
        self.rejects: list[Reject] = []
        self.explained: set[str] = set()  # images whose lack of questions a no_question.* reject explains
        self.stats: dict[str, Any] = {}

    def image(self, image_id: str) -> Image.Image:
        if image_id in self._loaded:
            return self._loaded[image_id]
        image = self._load(self._rows[image_id])
        image = image if image.mode == "RGB" else image.convert("RGB")
        if self._keep:
            self._loaded[image_id] = image
        return image

    def _pixels(self, image_id: str) -> np.ndarray | None:
        """The image's pixels for colour naming; an unreadable image only loses its colours."""
        try:
            image = self.image(image_id)  # RGB: its bytes as an array (np.asarray(image) copies them twice)
            return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.height, image.width, 3)
        except (OSError, ValueError) as err:
            self.rejects.append(question_reject(image_id, "image.colors_unavailable", f"colours not computed: {err}"))
            return None

    def build_scenes(self, instances: pa.Table) -> None:
        cfg = self.cfg
        self.scenes, scene_rejects = scenes_from_tables(
            instances,
            self.manifest,
            min_score=cfg.min_score,
            min_area=cfg.min_area,
            shadow_score=cfg.shadow_score,
            images=self._pixels if cfg.colors else None,
            visible_area_frac=cfg.visible_area_frac,
            occlusion_overlap=cfg.occlusion_overlap,
        )
        self.rejects[:0] = scene_rejects
        self.stats.update(images=len(self.scenes), instances_left_out=len(scene_rejects))
        if cfg.stability.enabled:
            self.scenes = [trusting_stability(s) for s in self.scenes]

    @property
    def doubt(self) -> Doubt | None:
        """The stability check's thresholds, or ``None`` when it is off."""
        st, cfg = self.cfg.stability, self.cfg
        if not st.enabled:
            return None
        # every threshold of questions.stability, plus the two the scene shares with the stage
        return Doubt(visible_area_frac=cfg.visible_area_frac, occlusion_overlap=cfg.occlusion_overlap,
                     **st.model_dump(exclude={"enabled"}))

    def unstable(self, refused: list[tuple[str, str, str]], tried: int) -> None:
        """Rows for the questions the stability check refused (``raw``: the image whose scene the
        perturbation changed), and its share in the stats."""
        self.rejects += [question_reject(qid, UNSTABLE, why, image_id) for qid, why, image_id in refused]
        self.stats["stability"] = {"refused": len(refused), "checked": tried,
                                   "refused_share": round(len(refused) / tried, 4) if tried else 0.0}

    def balanced_out(self, dropped: list[Question], what: str) -> None:
        """Questions the answer-share caps left out, each a ``balance.answer_share`` reject."""
        self.rejects += [question_reject(q.question_id, "balance.answer_share", what.format(q=q)) for q in dropped]

    def result(self, questions: list[Question]) -> StageResult:
        self.stats.update(
            questions=len(questions),
            by_variant=dict(Counter(q.variant for q in questions)),
            by_num_hops=dict(sorted(Counter(q.num_hops for q in questions if q.variant == "full").items())),
            by_family=dict(Counter(q.family for q in questions if q.variant == "full")),
            report=question_report([q.to_row() for q in questions]),
            rejects=count_codes(self.rejects),
        )
        rows = [q.to_row() for q in questions]
        return StageResult(to_table(rows, "questions"), rejects_table(self.rejects), self.stats)


def _program_questions(work: _Work) -> list[Question]:
    """The program writer's full questions; why an image got none is a ``no_question.*`` reject."""
    cfg = work.cfg
    res = generate(
        work.scenes,
        seed=cfg.seed,
        per_image=cfg.per_image,
        min_hops=cfg.min_hops,
        max_hops=cfg.max_hops,
        max_share=cfg.max_answer_share,
        margins=work.margins,
        max_skeleton_share=cfg.max_skeleton_answer_share,
        max_zero_share=cfg.max_zero_answer_share,
        oversample=cfg.oversample,
        min_candidates=cfg.min_candidates,
        doubt=work.doubt,
        attempt_budget=cfg.attempt_budget,
    )
    gen = {k: v for k, v in vars(res.stats).items()
           if k not in ("reasons", "attempt_reasons", "no_question", "unstable_questions")}
    gen["reasons"] = dict(res.stats.reasons)
    gen["attempt_reasons"] = dict(res.stats.attempt_reasons)
    work.stats["generator"] = gen
    for image_id, why in res.stats.no_question.items():
        tried = sum(why.values())
        if why:
            work.explained.add(image_id)
        for reason, n in why.most_common():
            work.rejects.append(question_reject(image_id, f"no_question.{reason}", f"stopped {n} of {tried} attempts"))
    if work.doubt is not None:
        work.unstable(res.stats.unstable_questions, res.stats.checked)
    work.balanced_out(res.balanced_out, _balance_detail(cfg))
    return res.questions


def _balance_detail(cfg: QuestionsConfig) -> str:
    return (f"answer {{q.answer}} over the {cfg.max_answer_share:g} batch share cap (0: "
            f"{min(cfg.max_answer_share, cfg.max_zero_answer_share):g}) or the "
            f"{cfg.max_skeleton_answer_share:g} share cap within its skeleton")


def _with_variants(work: _Work, full: list[Question]) -> list[Question]:
    """The full questions (when asked for) and the balanced variants derived from them."""
    cfg = work.cfg
    by_id = {s.image_id: s for s in work.scenes}
    variants, missing = derive_variants(full, by_id, [v for v in cfg.variants if v != "full"], work.margins)
    kept: list[Question] = []
    for v in sorted({q.variant for q in variants}):
        group = [q for q in variants if q.variant == v]
        sel, out = select_balanced(_by_image(group, work.scenes), cfg.per_image, cfg.max_answer_share)
        kept += sel
        work.balanced_out(out, f"{v} answer {{q.answer}} over the share cap")
    work.stats["variants_not_derivable"] = missing
    return (full if "full" in cfg.variants else []) + kept


def _calibrated(work: _Work, questions: list[Question], solver: VLMBackend) -> list[Question]:
    """Drop what the solver finds too easy (``difficulty.*``) and, when asked, what it answers without
    the image (``leakage.blind_solvable``)."""
    from pipelines.questions.difficulty import BLIND_SOLVABLE, blind_test, calibrate

    cfg, d = work.cfg, work.cfg.difficulty
    questions, too_easy = calibrate(questions, work.image, solver, k=d.k, temperature=d.temperature,
                                    drop_at_pass_rate=d.drop_at_pass_rate, prompt_version=cfg.vlm_prompt_version)
    work.rejects += too_easy
    if cfg.blind.enabled:
        b = cfg.blind
        questions, blind_solvable = blind_test(questions, solver, k=b.k, temperature=b.temperature,
                                               drop_at_accuracy=b.drop_at_accuracy,
                                               prompt_version=cfg.vlm_prompt_version)
        work.rejects += blind_solvable
        work.stats["blind_solvable"] = count_codes(blind_solvable).get(BLIND_SOLVABLE, 0)
    return questions


def _account_for_silent_images(work: _Work, questions: list[Question]) -> None:
    """Every image yields questions or a reject saying why not."""
    with_q = Counter(q.image_id for q in questions)
    for s in work.scenes:
        if not with_q[s.image_id] and s.image_id not in work.explained:
            work.rejects.append(question_reject(s.image_id, "no_question.none_verified",
                                                f"no verified question for a scene of {s.n} instances"))


def _by_image(questions: list[Question], scenes: list[Scene]) -> list[list[Question]]:
    groups: dict[str, list[Question]] = {s.image_id: [] for s in scenes}
    for q in questions:
        groups[q.image_id].append(q)
    return list(groups.values())


def _vlm_questions(work: _Work, instances: pa.Table, backend: VLMBackend) -> list[Question]:
    """The VLM writer's full questions over the scenes it can be shown (two instances or more, a
    loadable image), each image's instances marked from their masks."""
    from pipelines.questions.writer import VLMQuestionWriter, WriterItem

    cfg = work.cfg
    masks = _masks_by_image(instances)
    items: list[WriterItem] = []
    for s in work.scenes:
        if s.n < 2:
            work.rejects.append(question_reject(s.image_id, "scene.too_few_instances", f"{s.n} instances in the scene"))
            continue
        try:
            image = work.image(s.image_id)
        except (OSError, ValueError) as err:
            work.rejects.append(question_reject(s.image_id, "image.unavailable", f"image not loadable: {err}"))
            continue
        items.append(WriterItem(s, image, masks.get(s.image_id, {})))
    writer = VLMQuestionWriter(
        backend,
        prompt_version=cfg.vlm_prompt_version,
        margins=work.margins,
        min_hops=cfg.min_hops,
        max_hops=cfg.max_hops,
        samples_per_image=cfg.vlm_samples_per_image,
        max_new_tokens=cfg.vlm_max_new_tokens,
    )
    written, writer_rejects = writer.write(items)
    work.rejects += writer_rejects
    written = _fair_and_stable(work, written)
    selected, dropped = select_balanced(_by_image(written, work.scenes), cfg.per_image, cfg.max_answer_share,
                                        max_skeleton_share=cfg.max_skeleton_answer_share,
                                        max_zero_share=cfg.max_zero_answer_share)
    work.balanced_out(dropped, _balance_detail(cfg))
    return selected


def _fair_and_stable(work: _Work, written: list[Question]) -> list[Question]:
    """The written questions that keep the candidate rule (``reach.few_candidates``) and, when the check is
    on, survive the detector's doubt (``unstable.perception``), as the program writer's do."""
    by_id = {s.image_id: s for s in work.scenes}
    doubt = work.doubt
    perturbations: dict[str, Perturbations] = {}
    kept: list[Question] = []
    refused: list[tuple[str, str, str]] = []
    for q in written:
        scene = by_id[q.image_id]
        try:
            check_candidates(q.hops, scene, work.cfg.min_candidates)
        except ProgramError as err:
            work.rejects.append(question_reject(q.question_id, err.reason, err.detail))
            continue
        if doubt is not None:
            pert = perturbations.setdefault(q.image_id, Perturbations(scene, doubt))
            try:
                check_stable(q.hops, q.answer, pert, work.margins)
            except ProgramError as err:
                refused.append((q.question_id, err.detail, q.image_id))
                continue
        kept.append(q)
    if doubt is not None:
        work.unstable(refused, len(refused) + len(kept))
    return kept


def _masks_by_image(instances: pa.Table) -> dict[str, dict[int, Any]]:
    """Decoded masks by image and instance, for the writer's marks (an undecodable mask, already
    rejected by the scene builder, is simply not drawn)."""
    from pycocotools import mask as mask_utils

    masks: dict[str, dict[int, Any]] = {}
    for r in instances.to_pylist():
        rle = {"size": [r["mask_height"], r["mask_width"]], "counts": r["mask_rle"].encode("ascii")}
        try:
            masks.setdefault(r["image_id"], {})[r["instance_id"]] = mask_utils.decode(rle)
        except Exception as err:  # noqa: BLE001 - already rejected by the scene builder; no mark drawn
            log.debug("mask of %s#%s not drawable: %s", r["image_id"], r["instance_id"], err)
    return masks


class QuestionsStage(StageBase):
    """manifest + instances → questions (+ rejects). ``config`` overrides ``params.questions`` (the
    command's ``--seed``/``--per-image``/``--variants``). The VLM writer and the difficulty solver share
    the platform's VLM (``params.vlm``), loaded once in :meth:`setup` (or ``backend``, ready, for tests);
    images are read through the run's image source."""

    name = "questions"
    inputs = ("manifest", "instances")
    outputs = ("questions",)
    rejects = ("scene", "image", "no_question", "balance", "writer", "parse", "program", "structure", "args",
               "execution", "margin", "leakage", "reach", "plan", "difficulty", "unstable")
    metrics = ("images", "questions", "rejected")

    def __init__(self, config: QuestionsConfig | None = None, backend: VLMBackend | None = None) -> None:
        self._config = config
        self._given = backend
        self.model: VLMBackend | None = None

    def setup(self, env: RunEnv) -> None:
        from pipelines.ingest.decode import decode_image

        self.config = self._config or env.params.questions
        images, max_pixels = env.images, env.params.ingest.max_pixels
        max_bytes = env.params.ingest.max_bytes
        self.image_loader: ImageLoader = lambda row: decode_image(images.read(row["uri"], max_bytes=max_bytes),
                                                                  max_pixels=max_pixels).image
        if self.config.writer == "vlm" or self.config.difficulty.enabled:  # one VLM writes and solves
            if self._given is None:
                from pipelines.vlm.backends import make_vlm_backend

                self.model = make_vlm_backend(env.params.vlm)
            else:
                self.model = self._given
            self.model.setup()

    def process(self, shard: Shard) -> ShardResult:
        manifest = shard.tables["manifest"]
        res = run_questions(shard.tables["instances"], manifest, self.config, writer_backend=self.model,
                            solver_backend=self.model, image_loader=self.image_loader)
        stats = {"images": len(manifest), "questions": len(res.questions), "rejected": len(res.rejects)}
        return ShardResult({"questions": res.questions}, res.rejects, {**stats, "detail": res.stats})

    def teardown(self) -> None:
        if self.model is not None:
            self.model.teardown()
