"""The VLM writer with a fake backend returning realistic outputs; the parser on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.questions.program import ProgramError
from pipelines.questions.scene import Scene
from pipelines.questions.writer import (
    ParseError,
    VLMQuestionWriter,
    WriterItem,
    parse_writer_output,
    set_of_mark_image,
)
from pipelines.vlm import VLMBackend
from tests.support.fake_vlm import FakeVLM

pytestmark = pytest.mark.unit

# 200 x 200 scene: margins 4 px (relate), 6 px (cx/cy)
INST = [  # id, category, box (x, y, w, h), area
    (1, "cup", (40, 90, 20, 20), 400),
    (2, "cup", (140, 90, 20, 20), 100),
    (3, "dog", (15, 95, 10, 10), 100),
    (4, "dog", (175, 95, 10, 10), 100),
    (5, "dog", (95, 25, 10, 10), 100),
    (6, "dog", (57, 145, 10, 10), 100),
]


def make_item() -> WriterItem:
    boxes = [b for _, _, b, _ in INST]
    sc = Scene.from_arrays(
        "img-1",
        200,
        200,
        [i for i, *_ in INST],
        [c for _, c, *_ in INST],
        boxes,
        [a for *_, a in INST],
        [x + w / 2 for x, y, w, h in boxes],
        [y + h / 2 for x, y, w, h in boxes],
    )
    masks = {}
    for iid, _, (x, y, w, h), _ in INST:
        m = np.zeros((200, 200), np.uint8)
        m[y : y + h, x : x + w] = 1
        masks[iid] = m
    return WriterItem(sc, Image.new("RGB", (200, 200), (90, 90, 90)), masks)


def program(extreme: dict, relation: str, counted: str, category: str = "cup") -> list[dict]:
    """the <extreme> cup -> the dog nearest to it -> how many <counted> are <relation> that dog."""
    return [
        {"op": "find", "args": {"category": category}, "inputs": []},
        {"op": "extreme", "args": extreme, "inputs": [0]},
        {"op": "nearest", "args": {"category": "dog"}, "inputs": [1]},
        {"op": "relate", "args": {"relation": relation, "category": counted}, "inputs": [2]},
        {"op": "count", "args": {}, "inputs": [3]},
    ]


def obj(question: str, hops: list[dict], answer: object) -> str:
    return json.dumps({"question": question, "hops": hops, "answer": answer})


LARGEST = {"key": "area", "order": "max"}
RIGHTMOST = {"key": "cx", "order": "max"}
Q1 = "How many cups are further right than the dog nearest to the largest cup?"
GOOD_1 = obj(Q1, program(LARGEST, "right_of", "cup"), "2")
GOOD_2 = obj("How many dogs are further left than the dog nearest to the rightmost cup?",
             program(RIGHTMOST, "left_of", "dog"), 3)

OUTPUTS = {
    "fenced": f"Sure! Here is a question that needs several steps:\n```json\n{GOOD_1}\n```\nIt needs the image.",
    "trailing_prose_and_comma": GOOD_2.replace('"answer": 3}', '"answer": 3,}')
    + "\n\nThe answer requires counting.",
    "duplicate": f"```json\n{GOOD_1}\n```",
    "malformed": '```json\n{"question": "How many dogs are left of the largest cup?", "hops": [{"op": "find", "args": {"cat\n```',
    "wrong_answer": obj(Q1, program(LARGEST, "right_of", "cup"), "4"),
    "breaks_margin": obj(
        "How many dogs are lower down in the picture than the dog nearest to the largest cup?",
        program(LARGEST, "below", "dog"),
        "0",
    ),
    "does_not_execute": obj(
        "How many cups are further right than the dog nearest to the largest horse?",
        program(LARGEST, "right_of", "cup", "horse"),
        "0",
    ),
    "leaks": obj(Q1.replace("cups are", "cups (just 2) are"), program(LARGEST, "right_of", "cup"), "2"),
    "no_json": "I'm sorry, I cannot see any objects in this image.",
    "bad_structure": obj(
        "How many cups are there?",
        [
            {"op": "find", "args": {"category": "cup"}, "inputs": []},
            {"op": "count", "args": {}, "inputs": [0]},
        ],
        "2",
    ),
}
EXPECTED = {
    "duplicate": "writer.duplicate_sample",
    "malformed": "parse.malformed_json",
    "wrong_answer": "execution.answer_mismatch",
    "breaks_margin": "margin.relate_boundary",
    "does_not_execute": "execution.empty_set",
    "leaks": "leakage.answer_in_text",
    "no_json": "parse.no_json",
    "bad_structure": "structure.num_hops",
}


def test_fake_backend_satisfies_the_protocol() -> None:
    assert isinstance(FakeVLM([]), VLMBackend)


def test_writer_keeps_verified_questions_and_rejects_each_bad_output_with_its_reason() -> None:
    item = make_item()
    backend = FakeVLM(list(OUTPUTS.values()))
    writer = VLMQuestionWriter(backend, samples_per_image=len(OUTPUTS))
    questions, rejects = writer.write([item])
    assert [q.answer for q in questions] == ["2", "3"]
    assert all(q.generator == "vlm:fake:canned:prompt-v1" for q in questions)
    assert [h.value for h in questions[0].hops] == [[1, 2], [1], [3], [1, 2], 2]
    names = list(OUTPUTS)
    got = {names[int(r.item_id.rsplit("#vlm", 1)[1])]: r.code for r in rejects}
    assert got == EXPECTED
    assert all(r.stage == "questions" and r.raw and r.detail for r in rejects)
    # the request carried the set-of-mark image and the instance table from the versioned prompt
    (req,) = backend.calls[0]
    assert req.image.size == (200, 200) and "2 | cup | [140, 90, 160, 110] | 100 | [150, 100] | - | -" in req.prompt
    assert "Answer with JSON only" in req.prompt and req.system


def test_a_failing_backend_batch_becomes_reject_rows_and_the_next_batch_still_runs() -> None:
    items = [make_item(), make_item()]
    writer = VLMQuestionWriter(FakeVLM([GOOD_1], fail_on_call=1), samples_per_image=1, batch_size=1)
    questions, rejects = writer.write(items)
    assert len(questions) == 1
    assert rejects[0].code == "writer.backend_error" and rejects[0].detail.startswith("TimeoutError")


def test_set_of_mark_image_tints_masks_and_labels_centroids() -> None:
    item = make_item()
    marked = np.asarray(set_of_mark_image(item.image, item.scene, item.masks)).astype(int)
    plain = np.asarray(item.image).astype(int)
    assert marked.shape == plain.shape
    inside = item.masks[1].astype(bool)
    assert np.abs(marked[inside] - plain[inside]).sum(axis=1).mean() > 20  # tinted
    assert np.array_equal(marked[0:10, 0:10], plain[0:10, 0:10])  # background untouched
    label = marked[96:104, 46:54]  # the black label box with white text at the centroid of #1
    assert (label.sum(axis=2) == 0).any() and (label.sum(axis=2) > 600).any()  # white text on black


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{GOOD_1}\n```",
        f"```\n{GOOD_1}\n```",
        f"Here you go: {GOOD_1} Hope this helps!",
        GOOD_1.replace("]}", "],}").replace('"answer": "2"', '"answer": "2",'),
        f"```json\n{GOOD_1}",  # unclosed fence
        GOOD_1.replace('"hops"', '"program"'),
    ],
)
def test_parser_accepts_realistic_wrappings(text: str) -> None:
    out = parse_writer_output(text)
    assert out["answer"] == "2" and len(out["hops"]) == 5 and out["question"].startswith("How many cups")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "parse.empty"),
        ("No objects found.", "parse.no_json"),
        ('{"question": "How many?", "hops": [', "parse.malformed_json"),
        ('{"question": "How many dogs?", "hops": []}', "parse.missing_field"),
        ('{"question": "How many dogs?", "hops": [{"op": "find"}], "answer": "several"}', "parse.bad_field"),
        ('{"question": 3, "hops": [{"op": "find"}], "answer": "1"}', "parse.bad_field"),
    ],
)
def test_parser_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_writer_output(text)
    assert err.value.reason == reason
    assert isinstance(err.value, ProgramError)
