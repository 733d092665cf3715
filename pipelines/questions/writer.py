"""The VLM question writer: set-of-mark image + instance table in, question + hop program out.

Flow per image: draw numbered marks from the masks (:func:`set_of_mark_image`), fill the versioned
prompt (``prompts/<version>/writer.md``) with the instance table, ask the backend for
``samples_per_image`` completions, parse each (:func:`parse_writer_output`: fenced JSON, JSON
inside prose, light repair of trailing commas), then **re-execute** the program on the scene:
a program that does not parse, does not execute, breaks a margin, disagrees with its stated
answer (or stated hop values), or leaks a value is rejected with its reason (a REJECTS row).
Nothing a model says can crash the batch: backend failures become reject rows too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.contracts import canonical_number
from pipelines.contracts.rejects import Reject
from pipelines.questions import program as P
from pipelines.questions.degenerate import check_not_degenerate
from pipelines.questions.generator import Question, make_question
from pipelines.questions.leakage import check_needs_image, check_text
from pipelines.questions.ops import writer_ops_text
from pipelines.questions.program import Margins, ProgramError
from pipelines.questions.prompts import load_prompt
from pipelines.questions.scene import Scene, question_reject
from pipelines.vlm import VLMBackend, VLMFailure, VLMRequest, generate_outcomes, requests_per_call


class ParseError(ProgramError):
    """The model output is not a usable JSON question object."""

    family = "parse"


# ------------------------------------------------------------------------------ set-of-mark image

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
]


def set_of_mark_image(
    image: Image.Image, scene: Scene, masks: dict[int, np.ndarray], alpha: float = 0.45
) -> Image.Image:
    """The image with every scene instance's mask tinted, outlined, and labelled with its id at
    its centroid (set-of-mark prompting). ``masks`` maps instance id -> (height, width) mask."""
    base = image.convert("RGB")
    arr = np.asarray(base, dtype=np.float32).copy()
    for p in range(scene.n):
        iid = int(scene.ids[p])
        m = masks.get(iid)
        if m is None or m.shape != arr.shape[:2]:
            continue
        colour = np.asarray(_PALETTE[p % len(_PALETTE)], dtype=np.float32)
        sel = m.astype(bool)
        arr[sel] = (1 - alpha) * arr[sel] + alpha * colour
        edge = sel & ~(
            np.pad(sel, 1)[2:, 1:-1]
            & np.pad(sel, 1)[:-2, 1:-1]
            & np.pad(sel, 1)[1:-1, 2:]
            & np.pad(sel, 1)[1:-1, :-2]
        )
        arr[edge] = colour
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for p in range(scene.n):
        label = str(int(scene.ids[p]))
        x, y = float(scene.cx[p]), float(scene.cy[p])
        left, top, right, bottom = draw.textbbox((x, y), label, font=font, anchor="mm")
        draw.rectangle([left - 2, top - 1, right + 2, bottom + 1], fill=(0, 0, 0))
        draw.text((x, y), label, fill=(255, 255, 255), font=font, anchor="mm")
    return out


def instance_table_text(scene: Scene) -> str:
    """One line per instance for the prompt: ``id | category | box | area | centroid | colour | notes``.

    Notes: ``cut/hidden`` (never compare its size), ``uncountable`` (its category is never used)."""
    lines = []
    for row in scene.table():
        x0, y0, x1, y1 = row["box_xyxy"]
        cx, cy = row["centroid"]
        notes = [n for n, on in (("cut/hidden", not row["whole"]),
                                 ("uncountable", row["category"] in scene.uncountable)) if on]
        lines.append(
            f"{row['id']} | {row['category']} | [{x0:g}, {y0:g}, {x1:g}, {y1:g}] | {row['area']} | [{cx:g}, {cy:g}]"
            f" | {row['color'] or '-'} | {', '.join(notes) or '-'}"
        )
    return "\n".join(lines) if lines else "(no instances)"


# ------------------------------------------------------------------------------ parsing

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _json_objects(text: str) -> list[Any]:
    dec = json.JSONDecoder()
    found = []
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def parse_writer_output(text: str) -> dict[str, Any]:
    """The question object ``{"question", "hops", "answer"}`` from a model completion.

    Accepts a fenced ```json block, a JSON object inside prose, and trailing commas; ``program`` is
    accepted as an alias of ``hops``. Raises :class:`ParseError` (``parse.no_json``,
    ``parse.malformed_json``, ``parse.missing_field``, ``parse.bad_field``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty", "empty model output")
    chunks = [m.group(1) for m in _FENCE.finditer(text)] or [text]
    if "```" in text and not _FENCE.search(text):  # an unclosed fence: take what follows it
        chunks = [text.split("```", 1)[1].removeprefix("json")]
    candidates: list[dict[str, Any]] = []
    for chunk in chunks:
        for variant in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
            candidates = [
                o for o in _json_objects(variant) if "question" in o or "hops" in o or "program" in o
            ]
            if candidates:
                break
        if candidates:
            break
    if not candidates:
        if "{" in text:
            raise ParseError("malformed_json", "no parseable JSON object in the output")
        raise ParseError("no_json", "the output contains no JSON object")
    obj = max(candidates, key=lambda o: len(o))
    if "hops" not in obj and "program" in obj:
        obj["hops"] = obj.pop("program")
    for name in ("question", "hops", "answer"):
        if name not in obj or obj[name] in (None, ""):
            raise ParseError("missing_field", f"no {name!r} in the JSON object")
    if not isinstance(obj["question"], str):
        raise ParseError("bad_field", "question must be a string")
    if not isinstance(obj["hops"], list):
        raise ParseError("bad_field", "hops must be a list")
    try:
        obj["answer"] = canonical_number(obj["answer"])
    except ValueError:
        raise ParseError("bad_field", f"answer is not a number: {obj['answer']!r}") from None
    return obj


def verify_written(
    obj: dict[str, Any], scene: Scene, margins: Margins, min_hops: int = 3, max_hops: int = 6
) -> list[P.Hop]:
    """Re-execute a parsed program on the scene; stated hop values and answer must be reproduced,
    and the text must pass the leakage checks. Returns the executed hops; raises ProgramError."""
    hops = P.program_from_json(obj["hops"])
    done = P.verify(hops, scene, obj["answer"], margins, min_hops=min_hops, max_hops=max_hops)
    if not P.has_both_kinds(done):
        raise P.StructureError("missing_hop_kind", "a full question needs an instance-chain step and a perception hop")
    check_needs_image(done)
    check_not_degenerate(done)
    check_text(obj["question"].strip(), done)
    return done


# ------------------------------------------------------------------------------ the writer


@dataclass(frozen=True)
class WriterItem:
    """One image to write questions for: its scene, the RGB image and the instance masks by id."""

    scene: Scene
    image: Image.Image
    masks: dict[int, np.ndarray]


def program_reject(item_id: str, err: ProgramError, raw: str) -> Reject:
    """A refused completion: its code is the error's dotted ``reason`` (``parse.no_json``,
    ``structure.num_hops``, ``leakage.mark_reference``, ...)."""
    where = f"hop {err.hop}: " if err.hop is not None else ""
    return question_reject(item_id, err.reason, where + (err.detail or err.reason), raw)


class VLMQuestionWriter:
    """Writes questions with a :class:`~pipelines.vlm.VLMBackend` and keeps only verified ones.

    The backend's ``setup()``/``teardown()`` are the caller's (the stage owns the model life cycle).
    """

    def __init__(
        self,
        backend: VLMBackend,
        *,
        prompt_version: str = "v1",
        samples_per_image: int = 2,
        temperature: float = 0.7,
        max_new_tokens: int = 768,
        margins: Margins = P.DEFAULT_MARGINS,
        min_hops: int = 3,
        max_hops: int = 6,
        batch_size: int | None = None,
    ) -> None:
        self.backend = backend
        self.prompt_version = prompt_version
        self.samples = samples_per_image
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.margins = margins
        self.min_hops, self.max_hops = min_hops, max_hops
        self.batch_size = batch_size or requests_per_call(backend, 4)  # a served model: enough to fill its pool
        self.generator = f"vlm:{backend.name}:prompt-{prompt_version}"
        self.request_prompt_marker = "Answer with JSON only"  # a line every writer prompt version keeps

    def request(self, item: WriterItem) -> VLMRequest:
        """The chat turn for one image: the set-of-mark image and the filled writer prompt."""
        prompt = load_prompt(self.prompt_version, "writer").substitute(
            width=item.scene.width,
            height=item.scene.height,
            instance_table=instance_table_text(item.scene),
            ops=writer_ops_text(self.margins.max_count),
            min_hops=self.min_hops,
            max_hops=self.max_hops,
            max_count=self.margins.max_count,
        )
        system = load_prompt(self.prompt_version, "system").template.strip()
        return VLMRequest(set_of_mark_image(item.image, item.scene, item.masks), prompt, system)

    def write(self, items: Sequence[WriterItem]) -> tuple[list[Question], list[Reject]]:
        """Verified questions and rejects (one per refused completion, with its code)."""
        questions: list[Question] = []
        rejects: list[Reject] = []
        for start in range(0, len(items), self.batch_size):
            batch = list(items[start : start + self.batch_size])
            try:
                outputs = generate_outcomes(
                    self.backend,
                    [self.request(it) for it in batch],
                    max_new_tokens=self.max_new_tokens,
                    temperature=self.temperature,
                    num_samples=self.samples,
                )
                if len(outputs) != len(batch):
                    raise RuntimeError(f"backend returned {len(outputs)} results for {len(batch)} requests")
            except Exception as err:  # noqa: BLE001 - the whole batch becomes reject rows, with the error
                rejects += [
                    question_reject(it.scene.image_id, "writer.backend_error", f"{type(err).__name__}: {err}")
                    for it in batch
                ]
                continue
            for item, texts in zip(batch, outputs, strict=True):
                if isinstance(texts, VLMFailure):  # this image's request failed after its retries
                    rejects.append(question_reject(item.scene.image_id, "writer.backend_error", texts.detail))
                    continue
                q, r = self.check_outputs(item.scene, texts)
                questions += q
                rejects += r
        return questions, rejects

    def check_outputs(
        self, scene: Scene, texts: Sequence[str]
    ) -> tuple[list[Question], list[Reject]]:
        """Parse and verify the completions for one scene (deduplicated by program and by text)."""
        out: list[Question] = []
        rejects: list[Reject] = []
        seen: set[str] = set()
        for k, text in enumerate(texts):
            item_id = f"{scene.image_id}#vlm{k}"
            try:
                obj = parse_writer_output(text)
                hops = verify_written(obj, scene, self.margins, self.min_hops, self.max_hops)
            except ProgramError as err:
                rejects.append(program_reject(item_id, err, text))
                continue
            q = make_question(scene.image_id, hops, obj["question"].strip(), generator=self.generator)
            norm_text = " ".join(q.question.lower().split())
            if q.question_id in seen or norm_text in seen:
                rejects.append(question_reject(item_id, "writer.duplicate_sample",
                                               "same program or text as another sample", text))
                continue
            seen.update({q.question_id, norm_text})
            out.append(q)
        return out, rejects
