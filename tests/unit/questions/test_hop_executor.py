"""Hand-made scenes with known answers for every op and both sides of every margin edge."""

from __future__ import annotations

import pytest

from pipelines.questions.program import (
    ArgumentError,
    ExecutionError,
    Hop,
    MarginError,
    ReachError,
    StructureError,
    execute,
    program_from_json,
    program_to_json,
    question_id,
    verify,
)
from pipelines.questions.scene import Scene

pytestmark = pytest.mark.unit

W = H = 100  # default margins: area 1.5x, axis gap 6 px (edge lead 3 px), nearest 1.5x, relate gap 4 px
MARKER = (99, "marker", (95, 95, 2, 2), 4.0, 96.0, 96.0)  # what probe() relates to: far from everything


def scene(*inst: tuple, w: int = W, h: int = H, colors: list | None = None) -> Scene:
    """inst = (id, category, (x, y, w, h), area, cx, cy); a marker instance is always added."""
    inst = (*inst, MARKER)
    return Scene.from_arrays(
        "img",
        w,
        h,
        [i[0] for i in inst],
        [i[1] for i in inst],
        [i[2] for i in inst],
        [i[3] for i in inst],
        [i[4] for i in inst],
        [i[5] for i in inst],
        colors=None if colors is None else [*colors, None],
        visible_area_frac=0.0,
    )


def box_at(cx: float, cy: float, half: float = 2.0) -> tuple:
    return (cx - half, cy - half, 2 * half, 2 * half)


def inst(iid: int, cat: str, cx: float, cy: float, area: float = 50.0, box: tuple | None = None) -> tuple:
    return (iid, cat, box or box_at(cx, cy), area, cx, cy)


F = lambda c: Hop("find", {"category": c})
EXT = lambda k, o, i=0: Hop("extreme", {"key": k, "order": o}, (i,))
CNT = lambda i: Hop("count", {}, (i,))


def probe(i: int) -> list[Hop]:
    """Two closing hops that consume instance hop ``i`` without adding a margin of their own."""
    return [Hop("relate", {"relation": "right_of", "category": "marker"}, (i,)), CNT(i + 1)]


def values(hops: list[Hop], sc: Scene) -> list:
    return [h.value for h in execute(hops, sc, min_hops=1)]


# ------------------------------------------------------------------ every op, known answers


def test_find_count_and_extreme_by_each_key() -> None:
    sc = scene(
        inst(3, "cup", 10, 50, 200),
        inst(1, "cup", 50, 10, 100),
        inst(2, "cup", 90, 90, 60),
        inst(7, "dog", 50, 50),
    )
    assert values([F("cup"), CNT(0)], sc) == [[1, 2, 3], 3]
    assert values([F("cup"), EXT("area", "max"), *probe(1)], sc)[1] == [3]
    assert values([F("cup"), EXT("area", "min"), *probe(1)], sc)[1] == [2]
    assert values([F("cup"), EXT("cx", "min"), *probe(1)], sc)[1] == [3]
    assert values([F("cup"), EXT("cx", "max"), *probe(1)], sc)[1] == [2]
    assert values([F("cup"), EXT("cy", "min"), *probe(1)], sc)[1] == [1]
    assert values([F("cup"), EXT("cy", "max"), *probe(1)], sc)[1] == [2]
    assert values([F("horse"), CNT(0)], sc) == [[], 0]


def test_relate_uses_centroids_against_box_edges() -> None:
    # anchor box x 40..60, y 40..60; a candidate counts when its centroid is beyond the box edge
    anchor = (1, "cup", (40, 40, 20, 20), 400, 50, 50)
    horizontal = scene(anchor, inst(2, "dog", 20, 50), inst(3, "dog", 80, 50), inst(4, "dog", 10, 10))
    vertical = scene(anchor, inst(4, "dog", 50, 20), inst(5, "dog", 50, 80), inst(6, "dog", 10, 10))
    base = [F("cup"), EXT("area", "max")]

    def rel(r: str, sc: Scene) -> list:
        return values([*base, Hop("relate", {"relation": r, "category": "dog"}, (1,)), CNT(2)], sc)

    assert rel("left_of", horizontal)[2:] == [[2, 4], 2]
    assert rel("right_of", horizontal)[2:] == [[3], 1]
    assert rel("above", vertical)[2:] == [[4, 6], 2]
    assert rel("below", vertical)[2:] == [[5], 1]
    # a candidate inside the reference's box (between its edge and its centre) makes the relation ambiguous
    inside = scene(anchor, inst(2, "dog", 20, 50), inst(6, "dog", 45, 45))
    with pytest.raises(MarginError, match="relate_boundary"):
        rel("left_of", inside)


def test_relate_excludes_the_anchor_itself() -> None:
    sc = scene(inst(1, "cup", 50, 50, 300), inst(2, "cup", 10, 50, 100))
    v = values(
        [
            F("cup"),
            EXT("area", "max"),
            Hop("relate", {"relation": "left_of", "category": "cup"}, (1,)),
            CNT(2),
        ],
        sc,
    )
    assert v[2:] == [[2], 1]


def test_nearest_picks_smallest_centroid_distance_and_never_itself() -> None:
    sc = scene(
        inst(1, "cup", 50, 50, 300), inst(2, "cup", 70, 50), inst(3, "dog", 60, 50), inst(4, "dog", 10, 10)
    )
    hops = [
        F("cup"),
        EXT("area", "max"),
        Hop("nearest", {"category": "cup"}, (1,)),
        Hop("relate", {"relation": "right_of", "category": "dog"}, (2,)),
        CNT(3),
    ]
    assert values(hops, sc)[2] == [2]
    hops[2] = Hop("nearest", {"category": "dog"}, (1,))
    hops[3] = Hop("relate", {"relation": "left_of", "category": "dog"}, (2,))
    assert values(hops, sc)[2:] == [[3], [4], 1]


def test_rank_and_arith() -> None:
    sc = scene(inst(1, "cup", 10, 50, 100), inst(2, "cup", 40, 50, 300), inst(3, "cup", 70, 50, 150))
    base = [F("cup"), EXT("area", "max")]
    rank = lambda k, o: values([*base, Hop("rank", {"key": k, "order": o}, (1, 0))], sc)[-1]
    assert rank("cx", "min") == 2 and rank("cx", "max") == 2
    sc2 = scene(inst(1, "cup", 10, 50, 100), inst(2, "cup", 40, 50, 300), inst(3, "cup", 30, 50, 150))
    assert values([*base, Hop("rank", {"key": "cx", "order": "min"}, (1, 0))], sc2)[-1] == 3
    for fn, want in (("add", 5), ("sub", 1), ("max", 3), ("min", 2)):
        hops = [
            *base,
            Hop("rank", {"key": "cx", "order": "min"}, (1, 0)),
            CNT(0),
            Hop("arith", {"fn": fn}, (3, 2)),
        ]
        assert values(hops, sc)[-1] == want, fn


# ------------------------------------------------------------------ margins: just inside / just outside


@pytest.mark.parametrize(("runner", "ok"), [(100.0, True), (100.1, False)])
def test_extreme_area_max_needs_ratio_1_5(runner: float, ok: bool) -> None:
    sc = scene(inst(1, "cup", 10, 10, 150.0), inst(2, "cup", 80, 80, runner))
    _expect([F("cup"), EXT("area", "max"), *probe(1)], sc, ok, "margin.extreme_area")


@pytest.mark.parametrize(("runner", "ok"), [(150.0, True), (149.9, False)])
def test_extreme_area_min_needs_ratio_1_5(runner: float, ok: bool) -> None:
    sc = scene(inst(1, "cup", 10, 10, 100.0), inst(2, "cup", 80, 80, runner))
    _expect([F("cup"), EXT("area", "min"), *probe(1)], sc, ok, "margin.extreme_area")


@pytest.mark.parametrize(("gap", "ok"), [(6.0, True), (5.9, False)])
def test_extreme_cx_needs_6_percent_of_width(gap: float, ok: bool) -> None:
    sc = scene(inst(1, "cup", 50, 10), inst(2, "cup", 50 + gap, 80), inst(3, "cup", 10, 50), w=100, h=400)
    _expect([F("cup"), EXT("cx", "max"), *probe(1)], sc, ok, "margin.extreme_cx")


@pytest.mark.parametrize(("runner_right_edge", "ok"), [(59.0, True), (59.1, False)])
def test_extreme_cx_winner_box_edge_leads_by_half_the_gap(runner_right_edge: float, ok: bool) -> None:
    # centroids 10 px apart (> 6), but a wide runner-up reaches almost as far right: edge lead >= 3 px
    wide = (2, "cup", (30, 70, runner_right_edge - 30, 20), 300, 50, 80)
    sc = scene(inst(1, "cup", 60, 10), wide, w=100, h=400)
    _expect([F("cup"), EXT("cx", "max"), *probe(1)], sc, ok, "margin.extreme_cx")


@pytest.mark.parametrize(("gap", "ok"), [(12.0, True), (11.9, False)])
def test_extreme_cy_needs_6_percent_of_height(gap: float, ok: bool) -> None:
    # height 200 -> 12 px; width 100 would give 6 px: proves the height is used
    sc = scene(inst(1, "cup", 10, 100), inst(2, "cup", 80, 100 - gap), w=100, h=200)
    _expect([F("cup"), EXT("cy", "max"), *probe(1)], sc, ok, "margin.extreme_cy")


@pytest.mark.parametrize(("second", "ok"), [(15.0, True), (14.9, False)])
def test_nearest_runner_up_needs_1_5_times_the_distance(second: float, ok: bool) -> None:
    sc = scene(
        inst(1, "cup", 50, 50, 300),
        inst(2, "cup", 10, 10),
        inst(3, "dog", 60, 50),
        inst(4, "dog", 50, 50 + second),
        inst(5, "bird", 90, 90),
    )
    hops = [
        F("cup"),
        EXT("area", "max"),
        Hop("nearest", {"category": "dog"}, (1,)),
        Hop("relate", {"relation": "left_of", "category": "bird"}, (2,)),
        CNT(3),
    ]
    _expect(hops, sc, ok, "margin.nearest_ratio")


@pytest.mark.parametrize(
    ("relation", "coord", "ok"),
    [
        # box x 40..60 (centre 50; width 100 -> 4 px), y 40..60 (centre 50; height 200 -> 8 px):
        # no candidate centroid strictly between (boundary edge - gap) and (own centre + gap)
        ("left_of", (36.0, 50), True),
        ("left_of", (36.1, 50), False),
        ("left_of", (54.0, 50), True),  # right of the centre by the gap: clearly not further left
        ("left_of", (53.9, 50), False),
        ("right_of", (64.0, 50), True),
        ("right_of", (63.9, 50), False),
        ("right_of", (46.0, 50), True),
        ("right_of", (46.1, 50), False),
        ("above", (50, 32.0), True),
        ("above", (50, 32.1), False),
        ("above", (50, 58.0), True),
        ("above", (50, 57.9), False),
        ("below", (50, 68.0), True),
        ("below", (50, 67.9), False),
        ("below", (50, 42.0), True),
        ("below", (50, 42.1), False),
    ],
)
def test_relate_no_candidate_between_the_boundary_and_the_reference_centre(
    relation: str, coord: tuple, ok: bool
) -> None:
    sc = scene(
        (1, "cup", (40, 40, 20, 20), 400, 50, 50),
        inst(2, "dog", *coord),
        inst(3, "dog", 5, 150),
        w=100,
        h=200,
    )
    _expect(
        [
            F("cup"),
            EXT("area", "max"),
            Hop("relate", {"relation": relation, "category": "dog"}, (1,)),
            CNT(2),
        ],
        sc,
        ok,
        "margin.relate_boundary",
    )


@pytest.mark.parametrize(("n", "ok"), [(15, True), (16, False)])
def test_sets_a_person_counts_stay_at_most_15(n: int, ok: bool) -> None:
    sc = scene(*[inst(i + 1, "cup", 3 + 6 * i, 50) for i in range(n)], w=200)
    _expect([F("cup"), CNT(0)], sc, ok, "reach.set_too_large")


@pytest.mark.parametrize(("gap", "ok"), [(6.0, True), (5.9, False)])
def test_rank_needs_the_margin_to_every_other_member(gap: float, ok: bool) -> None:
    sc = scene(inst(1, "cup", 50, 10, 400), inst(2, "cup", 50 + gap, 80), inst(3, "cup", 10, 50))
    _expect(
        [F("cup"), EXT("area", "max"), Hop("rank", {"key": "cx", "order": "min"}, (1, 0))],
        sc,
        ok,
        "margin.rank_cx",
    )


@pytest.mark.parametrize(("left_edge", "ok"), [(46.0, True), (44.0, False)])
def test_rank_by_position_needs_edges_in_the_same_order_as_centres(left_edge: float, ok: bool) -> None:
    # X centre 50 box 46..54; the other centre 60 but (when wide) its box starts left of X's box
    other = (2, "cup", (left_edge + 0.5, 70, 2 * (60 - left_edge - 0.5), 10), 100, 60, 75)
    sc = scene(inst(1, "cup", 50, 10, 400, box=(46, 6, 8, 8)), other)
    _expect(
        [F("cup"), EXT("area", "max"), Hop("rank", {"key": "cx", "order": "min"}, (1, 0))],
        sc,
        ok,
        "margin.rank_cx",
    )


def test_single_member_extreme_and_single_candidate_nearest_have_no_runner_up() -> None:
    sc = scene(inst(1, "cup", 50, 50), inst(2, "dog", 52, 50), inst(3, "bird", 10, 50))
    hops = [
        F("cup"),
        EXT("area", "max"),
        Hop("nearest", {"category": "dog"}, (1,)),
        Hop("relate", {"relation": "left_of", "category": "bird"}, (2,)),
        CNT(3),
    ]
    assert values(hops, sc)[-3:] == [[2], [3], 1]


def _expect(hops: list[Hop], sc: Scene, ok: bool, reason: str) -> None:
    if ok:
        execute(hops, sc, min_hops=1)
    else:
        with pytest.raises((MarginError, ReachError)) as err:
            execute(hops, sc, min_hops=1)
        assert err.value.reason == reason


# ------------------------------------------------------------------ execution errors and structure


def test_execution_errors_name_the_hop() -> None:
    sc = scene(inst(1, "cup", 50, 50))
    with pytest.raises(ExecutionError) as err:
        execute([F("dog"), EXT("area", "max"), Hop("rank", {"key": "cx", "order": "min"}, (1, 0))], sc)
    assert err.value.reason == "execution.empty_set" and err.value.hop == 1
    with pytest.raises(ExecutionError, match="no_candidate"):
        execute(
            [
                F("cup"),
                EXT("area", "max"),
                Hop("nearest", {"category": "dog"}, (1,)),
                Hop("relate", {"relation": "above", "category": "cup"}, (2,)),
                CNT(3),
            ],
            sc,
        )


@pytest.mark.parametrize(
    ("hops", "reason"),
    [
        ([F("cup"), CNT(0)], "structure.num_hops"),
        ([Hop("count", {}, (0,)), EXT("area", "max"), CNT(0)], "structure.first_hop_has_inputs"),
        ([F("cup"), F("dog"), CNT(0)], "structure.no_inputs"),
        ([F("cup"), EXT("area", "max"), CNT(0)], "structure.dangling_hop"),
        (
            [F("cup"), EXT("area", "max"), Hop("nearest", {"category": "cup"}, (1,))],
            "structure.last_not_number",
        ),
        (
            [F("cup"), Hop("extreme", {"key": "area", "order": "max"}, (2,)), CNT(0)],
            "structure.input_not_earlier",
        ),
        ([F("cup"), EXT("area", "max"), CNT(1)], "args.input_type"),
        ([F("cup"), Hop("teleport", {}, (0,)), CNT(0)], "args.unknown_op"),
        ([F("cup"), Hop("extreme", {"key": "weight", "order": "max"}, (0,)), CNT(0)], "args.bad_key"),
        ([F("cup"), Hop("extreme", {"key": "area"}, (0,)), CNT(0)], "args.args"),
        ([F(""), CNT(0), Hop("arith", {"fn": "add"}, (1, 1))], "args.bad_category"),
        ([F("cup"), CNT(0), Hop("arith", {"fn": "add"}, (1,))], "args.arity"),
    ],
)
def test_structure_rules(hops: list[Hop], reason: str) -> None:
    sc = scene(inst(1, "cup", 50, 50), inst(2, "cup", 10, 10, 10))
    with pytest.raises((StructureError, ArgumentError)) as err:
        execute(hops, sc)
    assert err.value.reason == reason


def test_six_hops_allowed_seven_refused() -> None:
    sc = scene(inst(1, "cup", 50, 50, 300), inst(2, "cup", 10, 10, 10))
    six = [
        F("cup"),
        EXT("area", "max"),
        Hop("rank", {"key": "cx", "order": "min"}, (1, 0)),
        CNT(0),
        Hop("arith", {"fn": "add"}, (2, 3)),
        Hop("arith", {"fn": "sub"}, (4, 3)),
    ]
    assert execute(six, sc)[-1].value == 2
    with pytest.raises(StructureError, match="num_hops"):
        execute([*six, Hop("arith", {"fn": "max"}, (5, 2))], sc)


def test_verify_reproduces_values_and_refuses_a_wrong_answer_or_value() -> None:
    sc = scene(inst(1, "cup", 50, 50, 300), inst(2, "cup", 10, 50, 10), inst(3, "dog", 80, 50))
    hops = [
        F("cup"),
        EXT("area", "max"),
        Hop("relate", {"relation": "right_of", "category": "dog"}, (1,)),
        CNT(2),
    ]
    done = execute(hops, sc)
    assert verify(program_from_json(program_to_json(done)), sc, "1.0")[-1].value == 1
    with pytest.raises(ExecutionError, match="answer_mismatch"):
        verify(hops, sc, "2")
    wrong = [*done[:2], Hop("relate", done[2].args, done[2].inputs, value=[1]), done[3]]
    with pytest.raises(ExecutionError, match="value_mismatch"):
        verify(wrong, sc)


def test_kinds_and_question_id() -> None:
    sc = scene(
        inst(1, "cup", 50, 50, 300),
        inst(2, "cup", 10, 50, 10),
        inst(3, "dog", 80, 50, 200),
        inst(4, "dog", 80, 20, 50),
        inst(5, "bird", 90, 90),
    )
    hops = [
        F("cup"),
        EXT("area", "max"),
        Hop("relate", {"relation": "right_of", "category": "dog"}, (1,)),
        EXT("area", "max", 2),
        *probe(3),
    ]
    done = execute(hops, sc)
    assert [h.kind for h in done] == [
        "perception",
        "perception",
        "instance_chain",
        "instance_chain",
        "perception",
        "perception",
    ]
    assert done[3].value == [3]
    assert done[-1].value == 1  # the marker is further right than dog 3
    assert question_id("img", done) == question_id("img", hops)  # values/kinds do not change the id
    assert question_id("img", done) != question_id("other", done)
