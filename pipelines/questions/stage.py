"""The questions stage: contract tables in (instances + manifest), contract tables out
(questions + rejects). :class:`QuestionsStage` is its stage contract (:mod:`pipelines.runner`), which the
Airflow tasks and the ``hopchain questions`` command run; :func:`run_questions` is the stage's work on
one shard's tables.

Every image is accounted for: it yields questions or a reject saying why not; every refused
instance, model output, balanced-out or too-easy question is a :class:`~pipelines.contracts.rejects.Reject`
with its dotted code (``scene.*``, ``image.*``, ``no_question.*``, ``balance.*``, the writer's
``parse.*``/``structure.*``/..., ``difficulty.*``, ``leakage.blind_solvable``); ``stats["rejects"]``
counts them by code.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
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
from pipelines.questions.generator import Question, generate, select_balanced
from pipelines.questions.program import Margins, margins_of
from pipelines.questions.report import question_report
from pipelines.questions.scene import Scene, question_reject, scenes_from_tables
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

    ``cfg.writer == "vlm"`` needs ``writer_backend``; ``cfg.difficulty.enabled`` needs
    ``solver_backend`` (both already ``setup()``). Deterministic for the program writer.
    """
    margins = margins_of(cfg)
    rows_by_id = {r["image_id"]: r for r in manifest.to_pylist()}
    image_rejects: list[Reject] = []
    # each image is read once: kept for the VLM writer and the solver when they will need it again
    keep_images = cfg.writer == "vlm" or cfg.difficulty.enabled
    loaded: dict[str, Image.Image] = {}

    def image_of(image_id: str) -> Image.Image:
        if image_id in loaded:
            return loaded[image_id]
        image = image_loader(rows_by_id[image_id]).convert("RGB")
        if keep_images:
            loaded[image_id] = image
        return image

    def pixels(image_id: str) -> np.ndarray | None:
        """The image's pixels for colour naming; an unreadable image only loses its colours."""
        try:
            return np.asarray(image_of(image_id))
        except (OSError, ValueError) as err:
            image_rejects.append(question_reject(image_id, "image.colors_unavailable", f"colours not computed: {err}"))
            return None

    scenes, scene_rejects = scenes_from_tables(
        instances,
        manifest,
        min_score=cfg.min_score,
        min_area=cfg.min_area,
        shadow_score=cfg.shadow_score,
        images=pixels if cfg.colors else None,
        visible_area_frac=cfg.visible_area_frac,
        occlusion_overlap=cfg.occlusion_overlap,
    )
    rejects: list[Reject] = scene_rejects + image_rejects
    explained: set[str] = set()  # images whose lack of questions a no_question.* reject explains
    by_id = {s.image_id: s for s in scenes}
    stats: dict[str, Any] = {"images": len(scenes), "instances_left_out": len(scene_rejects)}

    if cfg.writer == "program":
        res = generate(
            scenes,
            seed=cfg.seed,
            per_image=cfg.per_image,
            min_hops=cfg.min_hops,
            max_hops=cfg.max_hops,
            max_share=cfg.max_answer_share,
            margins=margins,
            max_skeleton_share=cfg.max_skeleton_answer_share,
        )
        full, dropped = res.questions, res.balanced_out
        stats["generator"] = {
            k: v for k, v in vars(res.stats).items() if k not in ("reasons", "attempt_reasons", "no_question")
        }
        stats["generator"]["reasons"] = dict(res.stats.reasons)
        stats["generator"]["attempt_reasons"] = dict(res.stats.attempt_reasons)
        for image_id, why in res.stats.no_question.items():
            tried = sum(why.values())
            if why:
                explained.add(image_id)
            for reason, n in why.most_common():
                rejects.append(question_reject(image_id, f"no_question.{reason}", f"stopped {n} of {tried} attempts"))
    else:
        if writer_backend is None:
            raise ValueError("questions.writer is 'vlm' but no writer backend was given")
        full, dropped, writer_rejects = _vlm_questions(
            scenes, instances, cfg, writer_backend, margins, image_of
        )
        rejects += writer_rejects
    rejects += [
        question_reject(
            q.question_id,
            "balance.answer_share",
            f"answer {q.answer} over the {cfg.max_answer_share:g} batch share cap "
            f"or the {cfg.max_skeleton_answer_share:g} share cap within its skeleton",
        )
        for q in dropped
    ]

    variants, missing = derive_variants(full, by_id, [v for v in cfg.variants if v != "full"], margins)
    kept_variants: list[Question] = []
    for v in sorted({q.variant for q in variants}):
        group = [q for q in variants if q.variant == v]
        sel, out = select_balanced(_by_image(group, scenes), cfg.per_image, cfg.max_answer_share)
        kept_variants += sel
        rejects += [
            question_reject(q.question_id, "balance.answer_share", f"{v} answer {q.answer} over the share cap")
            for q in out
        ]
    stats["variants_not_derivable"] = missing
    questions = (full if "full" in cfg.variants else []) + kept_variants

    if cfg.difficulty.enabled:
        if solver_backend is None:
            raise ValueError("questions.difficulty.enabled but no solver backend was given")
        from pipelines.questions.difficulty import calibrate

        d = cfg.difficulty
        questions, too_easy = calibrate(
            questions,
            image_of,
            solver_backend,
            k=d.k,
            temperature=d.temperature,
            drop_at_pass_rate=d.drop_at_pass_rate,
            prompt_version=cfg.vlm_prompt_version,
        )
        rejects += too_easy
        if cfg.blind.enabled:
            from pipelines.questions.difficulty import BLIND_SOLVABLE, blind_test

            b = cfg.blind
            questions, blind_solvable = blind_test(
                questions,
                solver_backend,
                k=b.k,
                temperature=b.temperature,
                drop_at_accuracy=b.drop_at_accuracy,
                prompt_version=cfg.vlm_prompt_version,
            )
            rejects += blind_solvable
            stats["blind_solvable"] = count_codes(blind_solvable).get(BLIND_SOLVABLE, 0)

    with_q = Counter(q.image_id for q in questions)
    for s in scenes:
        if not with_q[s.image_id] and s.image_id not in explained:
            rejects.append(
                question_reject(s.image_id, "no_question.none_verified",
                                f"no verified question for a scene of {s.n} instances")
            )
    stats.update(
        questions=len(questions),
        by_variant=dict(Counter(q.variant for q in questions)),
        by_num_hops=dict(sorted(Counter(q.num_hops for q in questions if q.variant == "full").items())),
        by_family=dict(Counter(q.family for q in questions if q.variant == "full")),
        report=question_report([q.to_row() for q in questions]),
        rejects=count_codes(rejects),
    )
    return StageResult(to_table([q.to_row() for q in questions], "questions"), rejects_table(rejects), stats)


def _by_image(questions: list[Question], scenes: list[Scene]) -> list[list[Question]]:
    groups: dict[str, list[Question]] = {s.image_id: [] for s in scenes}
    for q in questions:
        groups[q.image_id].append(q)
    return list(groups.values())


def _vlm_questions(
    scenes: list[Scene],
    instances: pa.Table,
    cfg: QuestionsConfig,
    backend: VLMBackend,
    margins: Margins,
    image_of: Callable[[str], Image.Image],
) -> tuple[list[Question], list[Question], list[Reject]]:
    from pycocotools import mask as mask_utils

    from pipelines.questions.writer import VLMQuestionWriter, WriterItem

    masks: dict[str, dict[int, Any]] = {}
    for r in instances.to_pylist():
        rle = {"size": [r["mask_height"], r["mask_width"]], "counts": r["mask_rle"].encode("ascii")}
        try:
            masks.setdefault(r["image_id"], {})[r["instance_id"]] = mask_utils.decode(rle)
        except Exception as err:  # noqa: BLE001 - already rejected by the scene builder; no mark drawn
            log.debug("mask of %s#%s not drawable: %s", r["image_id"], r["instance_id"], err)
    items: list[WriterItem] = []
    rejects: list[Reject] = []
    for s in scenes:
        if s.n < 2:
            rejects.append(question_reject(s.image_id, "scene.too_few_instances", f"{s.n} instances in the scene"))
            continue
        try:
            image = image_of(s.image_id)
        except (OSError, ValueError) as err:
            rejects.append(question_reject(s.image_id, "image.unavailable", f"image not loadable: {err}"))
            continue
        items.append(WriterItem(s, image, masks.get(s.image_id, {})))
    writer = VLMQuestionWriter(
        backend,
        prompt_version=cfg.vlm_prompt_version,
        margins=margins,
        min_hops=cfg.min_hops,
        max_hops=cfg.max_hops,
        samples_per_image=cfg.vlm_samples_per_image,
        max_new_tokens=cfg.vlm_max_new_tokens,
    )
    written, writer_rejects = writer.write(items)
    selected, dropped = select_balanced(_by_image(written, scenes), cfg.per_image, cfg.max_answer_share)
    return selected, dropped, rejects + writer_rejects


class QuestionsStage(StageBase):
    """manifest + instances → questions (+ rejects). ``config`` overrides ``params.questions`` (the
    command's ``--seed``/``--per-image``/``--variants``). The VLM writer and the difficulty solver share
    the platform's VLM (``params.vlm``), loaded once in :meth:`setup` (or ``backend``, ready, for tests);
    images are read through the run's image source."""

    name = "questions"
    inputs = ("manifest", "instances")
    outputs = ("questions",)
    rejects = ("scene", "image", "no_question", "balance", "writer", "parse", "program", "structure", "args",
               "execution", "margin", "leakage", "reach", "plan", "difficulty")
    metrics = ("images", "questions", "rejected")

    def __init__(self, config: QuestionsConfig | None = None, backend: VLMBackend | None = None) -> None:
        self._config = config
        self._given = backend
        self.model: VLMBackend | None = None

    def setup(self, env: RunEnv) -> None:
        from pipelines.ingest.decode import decode_image

        self.config = self._config or env.params.questions
        images, max_pixels = env.images, env.params.ingest.max_pixels
        self.image_loader: ImageLoader = lambda row: decode_image(images.read(row["uri"]), max_pixels=max_pixels).image
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
