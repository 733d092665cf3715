"""The VLM writer end to end through a real (tiny, random-weight) Qwen3-VL: prompt, set-of-mark
image, generate, parse, verify, reject — and the difficulty solver on the same model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import ModelRef, QuestionsConfig
from pipelines.questions.scene import scenes_from_tables
from pipelines.questions.stage import run_questions
from pipelines.questions.synthetic import synthetic_tables
from pipelines.questions.writer import VLMQuestionWriter
from pipelines.vlm.backends import Qwen3VLBackend

pytestmark = pytest.mark.unit


class SpyQwen(Qwen3VLBackend):
    """The real backend, recording what it was asked and what it answered."""

    def generate(self, requests, **kw):  # type: ignore[override]
        out = super().generate(requests, **kw)
        self.seen = getattr(self, "seen", []) + list(zip(requests, out, strict=True))
        return out


def test_writer_runs_through_tiny_qwen3vl_and_rejects_its_gibberish(
    tiny_qwen3vl: Path, tmp_path: Path
) -> None:
    inst, man = synthetic_tables(4, 2, 6, image_dir=tmp_path)
    backend = SpyQwen(ModelRef(model=str(tiny_qwen3vl), device="cpu", batch_size=2))
    backend.setup()
    try:
        cfg = QuestionsConfig(writer="vlm", vlm_samples_per_image=2, vlm_max_new_tokens=48)
        res = run_questions(inst, man, cfg, writer_backend=backend)
        writer = VLMQuestionWriter(backend)
        writable = [s for s in scenes_from_tables(inst, man)[0] if s.n >= 2]
        # the model saw the set-of-mark image and the filled v1 prompt for every writable image
        assert len(backend.seen) == len(writable) > 0
        for (req, texts), sc in zip(backend.seen, writable, strict=True):
            assert req.image.size == (sc.width, sc.height) and len(texts) == 2
            assert writer.request_prompt_marker in req.prompt
            assert f"{int(sc.ids[0])} | {sc.categories[0]} |" in req.prompt
        # random weights write gibberish: every sample is rejected with a reason, nothing crashes
        rows = [r for r in res.rejects.to_pylist() if "#vlm" in r["item_id"]]
        assert len(rows) == 2 * len(writable)
        assert all(
            r["code"].partition(".")[0] in {"parse", "args", "structure", "execution", "margin", "leakage"}
            for r in rows
        )
        produced = [t for _, texts in backend.seen for t in texts]
        assert sorted(r["raw"] for r in rows) == sorted(t[:4000] for t in produced)
        assert res.questions.num_rows == 0
        # the difficulty solver on the same model: k samples at temperature 1.0, pass rate stored
        from PIL import Image

        from pipelines.questions.difficulty import calibrate
        from pipelines.questions.generator import generate

        qs = generate(writable[:1], per_image=2).questions
        uri = {r["image_id"]: r["uri"] for r in man.to_pylist()}
        kept, too_easy = calibrate(
            qs, lambda i: Image.open(uri[i]).convert("RGB"), backend, k=2, max_new_tokens=8
        )
        assert len(kept) + len(too_easy) == len(qs) > 0
        assert all(q.pass_rate in (0.0, 0.5) for q in kept)
    finally:
        backend.teardown()
