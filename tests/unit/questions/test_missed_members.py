"""Issue 29 item 3: counts and ranks that would have to assume objects the detector missed are refused.

A detector finds an object of size bin ``b`` with recall ``r_b``; each object it found stands for
``1 / r_b`` objects (the Horvitz-Thompson estimate), so ``(1 - r_b) / r_b`` of its like are expected to
be missing. A count sums that over the set it counts, a rank over the members ranked before the
instance and the instance itself; a named category over all its members. Past ``max_missed``
(``max_missed_category``) the question is refused as ``unstable.perception`` ("missed_members of ..."),
and the builder does not build it. Annotations (score 1.0) miss nothing, and a recall of 1.0 (the
default) switches the rule off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.config import QuestionsConfig, StabilityConfig
from pipelines.questions import program as P
from pipelines.questions.generator import GenerationStats, scene_candidates
from pipelines.questions.scene import Scene
from pipelines.questions.stability import (
    Doubt,
    Perturbations,
    UnstableError,
    check_missed,
    check_stable,
    missed_in_rank,
    missed_refusal,
    missed_weights,
    source_categories,
    trusting_stability,
)
from pipelines.questions.stage import run_questions
from pipelines.questions.synthetic import random_scene, synthetic_tables
from tests.unit.questions.test_stability_fast import doubtful_scene

pytestmark = pytest.mark.unit

DETECTOR = Doubt(recall_small=0.8, recall_medium=0.95, recall_large=0.99, max_missed=0.3, max_missed_category=0.6)


def _scene(scores: list[float] | None) -> Scene:
    box = np.array([[10, 10, 20, 20], [100, 10, 50, 50], [200, 10, 120, 120], [400, 10, 20, 25]], dtype=float)
    area = np.array([300.0, 2000.0, 12000.0, 1030.0])
    cx, cy = box[:, 0] + box[:, 2] / 2, box[:, 1] + box[:, 3] / 2
    return Scene.from_arrays("s", 640, 480, np.arange(1, 5), ["cup"] * 4, box, area, cx, cy, scores=scores)


def test_each_detection_stands_for_its_size_bins_missed_objects_and_annotations_for_none() -> None:
    d = Doubt(recall_small=0.4, recall_medium=0.72, recall_large=0.9)
    w = missed_weights(_scene([0.9, 0.9, 0.9, 0.9]), d)
    assert w == pytest.approx([0.6 / 0.4, 0.28 / 0.72, 0.1 / 0.9, 0.28 / 0.72])  # 1030 px is medium (>= 32²)
    assert not missed_weights(_scene([1.0, 1.0, 1.0, 1.0]), d).any()  # annotations
    assert not missed_weights(_scene(None), d).any()  # no scores: annotations
    assert not missed_weights(_scene([0.9] * 4), Doubt()).any()  # recall 1.0: the rule is off
    scene = _scene([0.9] * 4)
    # ranked by cx from the left: instance 2 (position 1) has instance 1 before it
    assert missed_in_rank(scene, w, 1, np.arange(4), "cx", "min") == pytest.approx(w[0] + w[1])
    assert missed_in_rank(scene, w, 1, np.arange(4), "cx", "max") == pytest.approx(w[1] + w[2] + w[3])


def _rule_holds(q, pert: Perturbations) -> None:  # type: ignore[no-untyped-def]
    scene, w, limit = pert.scene, pert.missed, pert.doubt.max_missed
    for h in q.hops:
        if h.op == "count":
            assert w[[scene.position[i] for i in q.hops[h.inputs[0]].value]].sum() <= limit
        if h.op == "rank":
            s = np.asarray([scene.position[i] for i in q.hops[h.inputs[1]].value])
            x = scene.position[q.hops[h.inputs[0]].value[0]]
            assert missed_in_rank(scene, w, x, s, h.args["key"], h.args["order"]) <= limit
    for i in range(len(q.hops)):
        winner = scene.position[q.hops[i].value[0]] if q.hops[i].op == "extreme" else None
        assert missed_refusal(q.hops, i, pert.unreliable, w, limit, winner) is None


def test_no_candidate_assumes_more_missed_objects_than_allowed_and_the_rule_binds() -> None:
    stats = GenerationStats()
    kept = refused_without = 0
    for seed in range(30):
        scene = doubtful_scene(seed)
        pert = Perturbations(scene, DETECTOR)
        for q in scene_candidates(scene, 10, seed=seed, doubt=DETECTOR, stats=stats):
            _rule_holds(q, pert)
            check_stable(q.hops, q.answer, pert, P.DEFAULT_MARGINS)  # and the full check holds
            kept += 1
        # the same scene with the rule off: some candidates the rule refuses, each refused by the full check
        for q in scene_candidates(scene, 10, seed=seed, doubt=Doubt()):
            try:
                check_missed(q.hops, pert)
            except UnstableError as err:
                refused_without += 1
                assert err.reason == "unstable.perception" and err.detail.startswith("missed_members of ")
                with pytest.raises(UnstableError, match="missed_members"):
                    check_stable(q.hops, q.answer, pert, P.DEFAULT_MARGINS)
    assert kept >= 10  # not vacuous
    assert refused_without >= 10  # the rule binds: without it, the builder builds what the check refuses


def test_a_category_that_likely_hides_a_member_serves_only_through_its_largest_member() -> None:
    from pipelines.questions.generator import _Draft

    w = np.array([0.1, 0.9])  # position 0 stands for few missed objects, position 1 for many
    hidden = {"person": 1.0}
    find = _Draft("find", {"category": "person"}, ())
    for op, args in (("count", {}), ("unique", {}), ("rank", {"key": "cx", "order": "min"}),
                     ("extreme", {"key": "cx", "order": "min"}), ("extreme", {"key": "area", "order": "min"})):
        hops = [find, _Draft(op, args, (0,))]
        assert missed_refusal(hops, 1, hidden, w, 0.5, 0).startswith("missed_members of 'person'"), op
    largest = [find, _Draft("filter_color", {"color": "red"}, (0,)), _Draft("extreme", {"key": "area", "order": "max"}, (1,))]
    assert missed_refusal(largest, 2, hidden, w, 0.5, 0) is None  # "the largest red person"
    assert missed_refusal(largest, 2, hidden, w, 0.5, 1) is not None  # unless the winner itself may have missed twins
    anchor = _Draft("find", {"category": "cup"}, ())
    assert missed_refusal([anchor, _Draft("extreme", {"key": "cx", "order": "min"}, (0,)),
                           _Draft("nearest", {"category": "person"}, (1,))], 2, hidden, w, 0.5) is not None
    assert missed_refusal([anchor, _Draft("count", {}, (0,))], 1, hidden, w, 0.5) is None  # cups are fine
    assert missed_refusal([find, _Draft("relate", {"category": "cup", "relation": "left_of"}, (0,)),
                           _Draft("count", {}, (1,))], 2, hidden, w, 0.5) is None  # counting cups left of a person


def test_no_candidate_depends_on_every_member_of_a_category_that_likely_hides_one() -> None:
    d = dataclasses.replace(DETECTOR, max_missed_category=0.45)
    kept = unreliable = largest = 0
    for seed in range(40):  # every member a detection (score 0.9): random scenes of 12, mostly small and medium
        scene = random_scene(seed, 12)
        scene = trusting_stability(dataclasses.replace(scene, score=np.full(scene.n, 0.9), _dist=[]))
        pert = Perturbations(scene, d)
        assert pert.unreliable == {c: pytest.approx(float(pert.missed[m].sum())) for c, m in scene.by_category.items()
                                   if pert.missed[m].sum() > 0.45}
        unreliable += len(pert.unreliable)
        for q in scene_candidates(scene, 10, seed=seed, doubt=d):
            kept += 1
            for i, h in enumerate(q.hops):
                if h.op not in ("nearest", "unique", "count", "rank", "extreme"):
                    continue
                if not set(source_categories(q.hops, i)) & set(pert.unreliable):
                    continue
                assert (h.op, h.args) == ("extreme", {"key": "area", "order": "max"}), (seed, i, h)
                assert pert.missed[scene.position[h.value[0]]] <= d.max_missed
                largest += 1
    assert kept > 0 and unreliable > 0 and largest > 0


def test_annotated_scenes_are_untouched_by_the_detectors_recall() -> None:
    for seed in range(10):
        scene = dataclasses.replace(doubtful_scene(seed), score=np.zeros(0), _dist=[])  # annotations: no scores
        a = [(q.question_id, q.answer) for q in scene_candidates(scene, 10, seed=seed, doubt=Doubt())]
        b = [(q.question_id, q.answer) for q in scene_candidates(scene, 10, seed=seed, doubt=DETECTOR)]
        assert a == b and a


def test_the_stage_reads_the_recall_from_its_configuration() -> None:
    instances, manifest = synthetic_tables(3, 12, 12)
    st = StabilityConfig(recall_small=0.5, recall_medium=0.85, recall_large=0.97, max_missed=0.5,
                         max_missed_category=1.0)
    off = run_questions(instances, manifest, QuestionsConfig(seed=1))
    on = run_questions(instances, manifest, QuestionsConfig(seed=1, stability=st))
    assert {q["question_id"] for q in on.questions.to_pylist()} != {q["question_id"] for q in off.questions.to_pylist()}
    from pipelines.questions.scene import scenes_from_tables
    scenes = {s.image_id: trusting_stability(s) for s in scenes_from_tables(instances, manifest)[0]}
    d = Doubt(recall_small=0.5, recall_medium=0.85, recall_large=0.97, max_missed=0.5, max_missed_category=1.0)
    pert = {i: Perturbations(s, d) for i, s in scenes.items()}
    for q in on.questions.to_pylist():
        if q["variant"] != "full":
            continue
        hops = P.program_from_json(q["hops"])
        check_missed(hops, pert[q["image_id"]])  # every released question keeps the rule


def test_the_vlm_writers_programs_go_through_the_same_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from tests.support.fake_vlm import FakeVLM

    d = Doubt(recall_small=0.8, recall_medium=0.95, recall_large=0.99, max_missed=0.3, max_missed_category=0.6)
    instances, manifest = synthetic_tables(4, 8, 14, image_dir=tmp_path)
    from pipelines.questions.scene import scenes_from_tables
    scenes = [trusting_stability(s) for s in scenes_from_tables(instances, manifest)[0]]
    # the "model" states programs that are stable under every perturbation but written without the rule
    canned = {s.image_id: scene_candidates(s, 4, seed=2, doubt=Doubt()) for s in scenes}
    expected_refused = set()
    for s in scenes:
        for q in canned[s.image_id]:
            try:
                check_missed(q.hops, Perturbations(s, d))
            except UnstableError:
                expected_refused.add(q.question_id)
    assert expected_refused  # the rule has something to refuse

    class Canned(FakeVLM):
        def generate(self, requests, **kw):  # type: ignore[no-untyped-def, override]
            self.calls.append(requests)  # one request per image: the model's samples, one program each
            return [[f"```json\n{json.dumps({'question': q.question, 'hops': [h.to_dict() for h in q.hops], 'answer': q.answer})}\n```"
                     for q in canned[self.current.pop(0)]] for _ in requests]

    backend = Canned([])
    backend.current = [s.image_id for s in scenes if s.n >= 2]
    st = StabilityConfig(recall_small=d.recall_small, recall_medium=d.recall_medium, recall_large=d.recall_large,
                         max_missed=d.max_missed, max_missed_category=d.max_missed_category)
    cfg = QuestionsConfig(writer="vlm", per_image=4, max_answer_share=1.0, max_skeleton_answer_share=1.0,
                          max_zero_answer_share=1.0, blind={"enabled": False}, stability=st)
    res = run_questions(instances, manifest, cfg, writer_backend=backend)
    refused = [r for r in res.rejects.to_pylist() if r["code"] == "unstable.perception"]
    assert {r["item_id"] for r in refused if r["detail"].startswith("missed_members of ")} == expected_refused
    assert not {q["question_id"] for q in res.questions.to_pylist()} & expected_refused
