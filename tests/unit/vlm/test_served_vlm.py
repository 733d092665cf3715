"""The served VLM path (issue 31, item 3) against the local fake OpenAI-compatible server.

What a user of a vLLM/SGLang server relies on: requests run concurrently but never more than
``concurrency`` at once; answers come back in request order whatever the finishing order; a 503, a 429
or a dropped connection followed by success gives exactly the answers of a run without failures; a
429's ``Retry-After`` pauses every request; and a request that fails for good is one reject row with
its reason, while the rest of the batch keeps its answers. Assertions are on the server's counters
(in flight, requests, arrival order), never on speed (that is ``bench/served.py``).
"""

from __future__ import annotations

import email.utils
import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.config import DetectConfig, OpenAIEndpoint
from pipelines.detect.stage import REQUEST_FAILED, Detector, ImageItem
from pipelines.questions.difficulty import SOLVER_ERROR, calibrate
from pipelines.questions.generator import make_question
from pipelines.questions.program import Hop
from pipelines.questions.scene import Scene
from pipelines.questions.writer import VLMQuestionWriter, WriterItem
from pipelines.vlm import VLMBatchError, VLMFailure, VLMRequest, generate_outcomes
from pipelines.vlm.backends import OpenAIBackend, retry_after_s
from tests.support.fake_openai import DROP, FakeChatServer

pytestmark = pytest.mark.unit


def _request(k: int) -> VLMRequest:
    return VLMRequest(Image.new("RGB", (8, 8), (k, k, k)), f"image {k}")


def _echo(body: dict[str, Any]) -> str:
    return f"answer to {body['messages'][-1]['content'][-1]['text']}"


def _backend(server: FakeChatServer, **kw: Any) -> OpenAIBackend:
    endpoint = OpenAIEndpoint(base_url=server.base_url, model="m", retry_backoff_s=0.01, **kw)
    backend = OpenAIBackend(endpoint)
    backend.setup()
    return backend


def _generate(server: FakeChatServer, n: int, **kw: Any) -> list[list[str]]:
    backend = _backend(server, **kw)
    try:
        return backend.generate([_request(k) for k in range(n)])
    finally:
        backend.teardown()


EXPECTED = [[f"answer to image {k}"] for k in range(12)]


def test_in_flight_reaches_the_concurrency_and_never_exceeds_it() -> None:
    with FakeChatServer(lambda body, attempt: _echo(body), delay_s=0.2) as server:
        out = _generate(server, 12, concurrency=4)
    assert server.max_in_flight == 4 and len(server.requests) == 12
    assert out == EXPECTED


def test_order_is_request_order_when_answers_finish_in_reverse() -> None:
    """Request k takes (12 - k) x 30 ms: the last request sent is the first answered."""
    finished: list[str] = []

    def reply(body: dict[str, Any], attempt: int) -> str:
        text = body["messages"][-1]["content"][-1]["text"]
        time.sleep((12 - int(text.split()[-1])) * 0.03)
        finished.append(text)
        return _echo(body)

    with FakeChatServer(reply) as server:
        out = _generate(server, 12, concurrency=12)
    assert finished != [f"image {k}" for k in range(12)]  # they did finish out of order
    assert out == EXPECTED


def _fail_first_attempt_of(targets: set[str], failure: Any) -> Any:
    """A reply that answers ``failure`` to the first attempt of each targeted prompt, then the echo."""
    seen: set[str] = set()
    lock = threading.Lock()

    def reply(body: dict[str, Any], attempt: int) -> Any:
        text = body["messages"][-1]["content"][-1]["text"]
        with lock:
            first = text in targets and text not in seen
            seen.add(text)
        return failure if first else _echo(body)

    return reply


@pytest.mark.parametrize("failure", [pytest.param((503, "overloaded"), id="503"),
                                     pytest.param((500, "boom"), id="500"),
                                     pytest.param(DROP, id="connection-dropped")])
def test_a_failure_then_success_gives_the_same_answers_as_no_failure(failure: Any) -> None:
    reply = _fail_first_attempt_of({"image 1", "image 5", "image 6"}, failure)
    with FakeChatServer(reply, delay_s=0.02) as server:
        out = _generate(server, 12, concurrency=3, max_retries=2)
    assert out == EXPECTED
    assert len(server.requests) == 12 + 3
    assert server.max_in_flight <= 3  # retries never raise the load


def test_a_429_retry_after_pauses_every_request() -> None:
    """The first request is refused with ``Retry-After: 0.5``; the other workers, busy 0.1 s with their
    own requests, send nothing more until the half second is over."""
    pause = 0.5

    def reply(body: dict[str, Any], attempt: int) -> Any:
        if attempt == 1:
            return (429, "too many requests", {"Retry-After": str(pause)})
        time.sleep(0.1)
        return _echo(body)

    with FakeChatServer(reply) as server:
        out = _generate(server, 12, concurrency=4, max_retries=1)
    assert out == EXPECTED and len(server.requests) == 13
    refused_at = server.arrivals[0]
    later = server.arrivals[4:]  # everything after the first wave of 4
    assert later and all(t >= refused_at + pause - 0.01 for t in later), [round(t - refused_at, 3) for t in later]


def test_a_long_retry_after_is_capped_by_max_retry_after_s() -> None:
    def reply(body: dict[str, Any], attempt: int) -> Any:
        return (429, "later", {"Retry-After": "3600"}) if attempt == 1 else _echo(body)

    with FakeChatServer(reply) as server:
        out = _generate(server, 2, concurrency=1, max_retries=1, max_retry_after_s=0.05)
    assert out == EXPECTED[:2]


def test_retry_after_header_forms() -> None:
    from httpx import Headers

    assert retry_after_s(Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(Headers({"retry-after": "2"})) == 2.0
    now = 1_000_000.0
    assert retry_after_s(Headers({"retry-after": email.utils.formatdate(now + 30, usegmt=True)}), now=now) == 30.0
    assert retry_after_s(Headers({"retry-after": "soon"})) is None and retry_after_s(Headers({})) is None


def test_a_request_failing_for_good_is_a_failure_in_its_place_and_the_others_are_kept() -> None:
    def reply(body: dict[str, Any], attempt: int) -> Any:
        return (503, "down") if body["messages"][-1]["content"][-1]["text"] == "image 2" else _echo(body)

    with FakeChatServer(reply) as server:
        backend = _backend(server, concurrency=2, max_retries=2)
        try:
            with pytest.raises(VLMBatchError, match="1 of 4 requests failed"):
                backend.generate([_request(k) for k in range(4)])
            outcomes = generate_outcomes(backend, [_request(k) for k in range(4)])
        finally:
            backend.teardown()
    assert outcomes[:2] == EXPECTED[:2] and outcomes[3] == EXPECTED[3]
    assert isinstance(outcomes[2], VLMFailure) and "after 3 attempts" in outcomes[2].detail
    assert "HTTP 503" in outcomes[2].detail


def test_a_client_error_is_not_retried() -> None:
    with FakeChatServer(lambda body, attempt: (400, "bad request")) as server:
        backend = _backend(server, max_retries=3)
        try:
            (outcome,) = generate_outcomes(backend, [_request(0)])
        finally:
            backend.teardown()
    assert isinstance(outcome, VLMFailure) and "HTTP 400" in outcome.detail and len(server.requests) == 1


def test_the_seed_is_sent_when_configured() -> None:
    with FakeChatServer(lambda body, attempt: _echo(body)) as server:
        _generate(server, 1, seed=11)
    assert server.requests[0]["seed"] == 11


# -- the platform's callers: detect, the question writer, the solver ------------------------------------------
def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8))


def test_detect_over_a_served_model_rejects_only_the_image_whose_request_failed() -> None:
    def reply(body: dict[str, Any], attempt: int) -> Any:
        data_url = body["messages"][-1]["content"][0]["image_url"]["url"]
        if data_url == broken_url:
            return DROP
        return '[{"bbox_2d": [0, 0, 500, 500], "label": "cup"}]'

    from pipelines.vlm.backends import encode_image_data_url

    items = [ImageItem(f"img{k}", _image(k)) for k in range(6)]
    broken_url = encode_image_data_url(items[3].image)
    with FakeChatServer(reply, delay_s=0.02) as server:
        backend = _backend(server, concurrency=3, max_retries=1)
        detector = Detector(DetectConfig(backend="vlm"), backend=backend)
        try:
            res = detector.process(items)
        finally:
            detector.teardown()
    assert res.detections.column("image_id").to_pylist() == ["img0", "img1", "img2", "img4", "img5"]
    (reject,) = res.rejects.to_pylist()
    assert (reject["item_id"], reject["code"]) == ("img3", REQUEST_FAILED)
    assert "after 2 attempts" in reject["detail"] and "openai:m" in reject["detail"]
    assert res.counts["request_failed"] == 1 and res.counts["rejected"] == 1
    assert server.max_in_flight <= 3


def _scene(image_id: str) -> WriterItem:
    boxes = [(5.0, 5.0, 10.0, 10.0), (30.0, 20.0, 10.0, 10.0)]
    scene = Scene.from_arrays(image_id, 60, 40, [1, 2], ["cup", "cup"], boxes, [100, 100], [10.0, 35.0],
                              [10.0, 25.0])
    masks = {}
    for iid, (x, y, w, h) in zip((1, 2), boxes, strict=True):
        m = np.zeros((40, 60), np.uint8)
        m[int(y): int(y + h), int(x): int(x + w)] = 1
        masks[iid] = m
    return WriterItem(scene, Image.new("RGB", (60, 40), (90, 90, 90)), masks)


def test_the_writer_rejects_only_the_image_whose_request_failed() -> None:
    def reply(body: dict[str, Any], attempt: int) -> Any:
        return (503, "down") if "img-b" in body["messages"][-1]["content"][-1]["text"] else "not json"

    items = [_scene("img-a"), _scene("img-b"), _scene("img-c")]
    with FakeChatServer(reply) as server:
        backend = _backend(server, concurrency=2, max_retries=1)
        try:
            writer = VLMQuestionWriter(backend, samples_per_image=1)
            # the scene's id is not in the prompt: tag each request's prompt so the server can tell them apart
            writer.request = _tagged_request(writer.request)  # type: ignore[method-assign]
            _, rejects = writer.write(items)
        finally:
            backend.teardown()
    backend_errors = [r for r in rejects if r.code == "writer.backend_error"]
    assert [r.item_id for r in backend_errors] == ["img-b"] and "HTTP 503" in backend_errors[0].detail
    assert {r.item_id.split("#")[0] for r in rejects if r.code != "writer.backend_error"} == {"img-a", "img-c"}
    assert writer.batch_size == 4 * 2  # handed enough requests per call to fill the served model's pool


def _tagged_request(make: Any) -> Any:
    def request(item: WriterItem) -> VLMRequest:
        r = make(item)
        return VLMRequest(r.image, f"{r.prompt}\n[{item.scene.image_id}]", r.system)

    return request


def test_the_solver_keeps_a_question_whose_request_failed_with_its_reject() -> None:
    hops = [Hop("find", {"category": "cup"}, (), "perception", [1, 2]), Hop("count", {}, (0,), "perception", 2)]
    questions = [make_question(f"img{k}", hops, f"How many cups? ({k})", generator="t") for k in range(3)]

    def reply(body: dict[str, Any], attempt: int) -> Any:
        return DROP if "(1)" in body["messages"][-1]["content"][-1]["text"] else "The answer is 2."

    with FakeChatServer(reply) as server:
        backend = _backend(server, concurrency=2, max_retries=1)
        try:
            kept, rejects = calibrate(questions, lambda image_id: _image(0), backend, k=2, drop_at_pass_rate=0.75)
        finally:
            backend.teardown()
    assert [q.question_id for q in kept] == [questions[1].question_id]  # the two answered ones were too easy
    codes = {r.item_id: r.code for r in rejects}
    assert codes[questions[1].question_id] == SOLVER_ERROR
    assert codes[questions[0].question_id] == codes[questions[2].question_id] == "difficulty.too_easy"
