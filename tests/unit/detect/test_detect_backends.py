"""Detect through the real backends: tiny Qwen3-VL in-process, and an OpenAI-compatible server."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import DetectConfig, ModelRef, OpenAIEndpoint, VLMConfig
from pipelines.contracts import DETECTIONS, REJECTS
from pipelines.detect.stage import Detector, ImageItem
from pipelines.vlm import VLMBackend, VLMRequest
from pipelines.vlm.backends import OpenAIBackend, Qwen3VLBackend, VLMRequestError
from tests.support.fake_openai import FakeChatServer

pytestmark = pytest.mark.unit


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_tiny_qwen3vl_generates_batched_with_left_padding(tiny_qwen3vl: Path) -> None:
    backend = Qwen3VLBackend(ModelRef(model=str(tiny_qwen3vl), device="cpu", batch_size=2))
    assert isinstance(backend, VLMBackend)
    backend.setup()
    try:
        assert backend.processor.tokenizer.padding_side == "left"
        requests = [
            VLMRequest(_image(200, 120, 1), "Locate every object."),
            VLMRequest(_image(90, 300, 2), "Locate every object in the image, please, with boxes."),
            VLMRequest(_image(64, 64, 3), "List categories.", system="You are a careful annotator."),
        ]
        out = backend.generate(requests, max_new_tokens=6)
        assert len(out) == 3 and all(len(s) == 1 and isinstance(s[0], str) for s in out)
        # batching must not change an answer: greedy decoding alone equals decoding in a batch
        alone = backend.generate(requests[1:2], max_new_tokens=6)
        assert alone[0] == out[1]
        sampled = backend.generate(requests[:1], max_new_tokens=4, temperature=1.0, num_samples=3)
        assert len(sampled) == 1 and len(sampled[0]) == 3
    finally:
        backend.teardown()


def test_detect_stage_with_tiny_qwen_rejects_gibberish_after_one_repair(tiny_qwen3vl: Path) -> None:
    """Random weights answer gibberish: each image is asked twice, then rejected with its raw text."""
    vlm = VLMConfig(backend="qwen3vl", qwen3vl=ModelRef(model=str(tiny_qwen3vl), device="cpu"))
    stage = Detector(DetectConfig(backend="vlm", max_new_tokens=5), vlm)
    stage.setup()
    try:
        res = stage.process([ImageItem("img-a", _image(100, 80)), ImageItem("img-b", _image(80, 100, 1))])
    finally:
        stage.teardown()
    assert res.detections.schema == DETECTIONS and res.rejects.schema == REJECTS
    assert res.rejects.column("item_id").to_pylist() == ["img-a", "img-b"]
    assert all("--- repair answer ---" in raw for raw in res.rejects.column("raw").to_pylist())
    assert res.counts["rejected"] == 2


class ScriptedVLM:
    """A VLMBackend answering from a script (the parser/repair logic, without a model)."""

    name = "scripted:v1"

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def setup(self) -> None: ...

    def teardown(self) -> None: ...

    def generate(self, requests, *, max_new_tokens=512, temperature=0.0, num_samples=1):  # type: ignore[no-untyped-def]
        self.calls.append([r.prompt for r in requests])
        return [[self.answers[r.image.info["id"]].pop(0)] for r in requests]


def _tagged(image_id: str, w: int, h: int) -> ImageItem:
    img = _image(w, h)
    img.info["id"] = image_id
    return ImageItem(image_id, img)


def test_detect_stage_repairs_once_then_rejects() -> None:
    vlm = ScriptedVLM(
        {
            "good": ['```json\n[{"bbox_2d": [0, 0, 500, 500], "label": "Dogs"}]\n```'],
            "fixable": ['[{"bbox_2d": [0, 0, 10, 10], "label": "cat"', '[{"bbox_2d": [0, 0, 1000, 1000], "label": "cat"}]'],
            "hopeless": ["I cannot see anything", "still no json"],
            "empty": ["[]"],
        }
    )
    stage = Detector(DetectConfig(backend="vlm"), backend=vlm)
    stage.setup()
    res = stage.process([_tagged(k, 200, 100) for k in ("good", "fixable", "hopeless", "empty")])
    rows = res.detections.to_pylist()
    assert [(r["image_id"], r["category"], r["bbox"]) for r in rows] == [
        ("good", "dog", [0.0, 0.0, 100.0, 50.0]),
        ("fixable", "cat", [0.0, 0.0, 200.0, 100.0]),
    ]
    assert all(r["source"] == "scripted:v1" and r["score"] == 1.0 for r in rows)
    rejects = res.rejects.to_pylist()
    assert [(r["item_id"], r["code"]) for r in rejects] == [("hopeless", "answer.unparseable")]
    assert "I cannot see anything" in rejects[0]["raw"] and "still no json" in rejects[0]["raw"]
    assert len(vlm.calls) == 2 and len(vlm.calls[1]) == 2  # one repair round for the two broken answers
    assert "could not be parsed" in vlm.calls[1][0]
    assert res.counts == {"images": 4, "repaired": 1, "rejected": 1, "dropped_items": 0, "request_failed": 0,
                          "detections": 2}


def test_openai_backend_sends_base64_images_and_keeps_order() -> None:
    def reply(body: dict, attempt: int) -> str:
        content = body["messages"][-1]["content"]
        url = content[0]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        return f'[{{"bbox_2d": [0, 0, 1000, 1000], "label": "w{img.width}"}}]'

    with FakeChatServer(reply) as server:
        backend = OpenAIBackend(OpenAIEndpoint(base_url=server.base_url, model="qwen3-vl-fake", concurrency=3))
        backend.setup()
        try:
            out = backend.generate([VLMRequest(_image(w, 20), "boxes please") for w in (10, 20, 30, 40)], num_samples=2)
        finally:
            backend.teardown()
    assert [o[0] for o in out] == [f'[{{"bbox_2d": [0, 0, 1000, 1000], "label": "w{w}"}}]' for w in (10, 20, 30, 40)]
    assert all(len(o) == 2 for o in out)
    assert server.requests[0]["model"] == "qwen3-vl-fake" and server.requests[0]["n"] == 2


def test_openai_backend_bounded_concurrency() -> None:
    with FakeChatServer(lambda body, attempt: "[]", delay_s=0.1) as server:
        backend = OpenAIBackend(OpenAIEndpoint(base_url=server.base_url, model="m", concurrency=2))
        backend.setup()
        try:
            backend.generate([VLMRequest(_image(8, 8), "x") for _ in range(6)])
        finally:
            backend.teardown()
    assert server.max_in_flight == 2 and len(server.requests) == 6


def test_openai_backend_retries_server_errors() -> None:
    def reply(body: dict, attempt: int) -> str | tuple[int, str]:
        return (503, "overloaded") if attempt <= 2 else "[]"

    with FakeChatServer(reply) as server:
        backend = OpenAIBackend(OpenAIEndpoint(base_url=server.base_url, model="m", max_retries=2, concurrency=1))
        backend.setup()
        try:
            assert backend.generate([VLMRequest(_image(8, 8), "x")]) == [["[]"]]
        finally:
            backend.teardown()
    assert len(server.requests) == 3


def test_openai_backend_times_out_and_raises() -> None:
    with FakeChatServer(lambda body, attempt: "[]", delay_s=1.0) as server:
        backend = OpenAIBackend(OpenAIEndpoint(base_url=server.base_url, model="m", timeout_s=0.2, max_retries=0))
        backend.setup()
        started = time.monotonic()
        try:
            with pytest.raises(VLMRequestError, match="Timeout"):
                backend.generate([VLMRequest(_image(8, 8), "x")])
        finally:
            backend.teardown()
        assert time.monotonic() - started < 0.9  # gave up before the slow server answered


def test_detect_stage_writes_each_malformed_item_as_a_reject_with_its_code() -> None:
    answer = (
        '```json\n[{"bbox_2d": [0, 0, 500, 500], "label": "dog"}, {"bbox_2d": [1, 2, 3], "label": "cat"}, '
        '{"bbox_2d": [0, 0, 10, 10]}, "!!!", 42]\n```'
    )
    stage = Detector(DetectConfig(backend="vlm"), backend=ScriptedVLM({"mixed": [answer]}))
    stage.setup()
    res = stage.process([_tagged("mixed", 200, 100)])
    assert res.detections.column("category").to_pylist() == ["dog"]
    assert res.rejects.schema == REJECTS
    rejects = res.rejects.to_pylist()
    assert [(r["stage"], r["item_id"], r["code"]) for r in rejects] == [
        ("detect", "mixed#item1", "item.bad_box"),
        ("detect", "mixed#item2", "item.no_label"),
        ("detect", "mixed#item3", "item.no_label"),
        ("detect", "mixed#item4", "item.not_an_object"),
    ]
    assert rejects[0]["raw"] == '{"bbox_2d": [1, 2, 3], "label": "cat"}' and all(r["detail"] for r in rejects)
    assert res.counts["dropped_items"] == 4 and res.counts["rejected"] == 0
