"""The annotation journal, the registry and the integrity rules, on an in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.annotation.handout import plan
from pipelines.annotation.integrity import (
    CHANGED_AFTER_SEEN,
    CHANGED_BY_OTHER,
    PLATFORM_ACCOUNT,
    UNREGISTERED,
    check,
)
from pipelines.annotation.journal import Journal, view_of
from pipelines.annotation.pull import decide_journaled, decide_tasks
from pipelines.annotation.registry import AnnotatorRegistry, RegistryError, load, save
from pipelines.annotation.simulated import answer_result
from tests.support.memory_store import MemoryStore

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def ann(aid: int, user: int, answer: float, updated_by: int | None = None, at: int = 0) -> dict:
    return {"id": aid, "completed_by": user, "updated_by": user if updated_by is None else updated_by,
            "created_at": (T0 + timedelta(seconds=aid)).isoformat(),
            "updated_at": (T0 + timedelta(seconds=aid + at)).isoformat(), "was_cancelled": False,
            "lead_time": 5.0, "result": answer_result(answer)}


def task(tid: int, qid: str, anns: list[dict], overlap: int = 4) -> dict:
    return {"id": tid, "data": {"question_id": qid, "batch": "b"}, "annotations": anns, "overlap": overlap,
            "is_labeled": len(anns) >= overlap}


def registry(*users: int, simulated: tuple[int, ...] = ()) -> AnnotatorRegistry:
    r = AnnotatorRegistry()
    for u in users:
        r.register(u, f"u{u}@x", "simulated" if u in simulated else "person", platform={1})
    return r


def test_journal_is_append_only_and_content_addressed():
    store = MemoryStore()
    j = Journal(store, "journal")
    tasks = [task(10, "q", [ann(1, 2, 3), ann(2, 3, 3)])]
    view, n = j.append(7, "b", tasks, now=T0)
    assert n == 2 and view.segments == 1
    _, again = j.append(7, "b", tasks, now=T0 + timedelta(minutes=1))
    assert again == 0 and len(list(store.list("journal/"))) == 1  # nothing new: nothing written
    changed = [task(10, "q", [ann(1, 2, 5, at=9), ann(2, 3, 3)])]
    _, n = j.append(7, "b", changed, now=T0 + timedelta(minutes=2))
    assert n == 1
    keys = sorted(store.list("journal/7/b/"))
    assert len(keys) == 2 and all(k.endswith(".jsonl") for k in keys)
    import hashlib

    for k in keys:  # the name is the sha256 of the bytes
        assert k.rsplit("-", 1)[1].removesuffix(".jsonl") == hashlib.sha256(store.get_bytes(k)).hexdigest()
    fresh = Journal(store, "journal").view(7, "b")  # another process reads the same history
    assert [v["content"] for v in fresh.versions[1]] == [fresh.first(1)["content"], fresh.latest(1)["content"]]
    assert fresh.first(1)["content"] != fresh.latest(1)["content"]
    assert fresh.tasks()[0]["annotations"][0]["result"] == answer_result(5)  # latest version


def test_integrity_rules():
    reg = registry(2, 3, 4, 5)
    view = view_of([task(10, "q", [
        ann(1, 2, 3),                 # counts
        ann(2, 3, 3, updated_by=2),   # changed by another account (or created in its name)
        ann(3, 9, 3),                 # not registered
        ann(4, 1, 3),                 # the platform's own account
    ])])
    j = Journal(MemoryStore(), "j")
    j.append(1, "b", [task(10, "q", [ann(5, 4, 3)])], now=T0)
    late, _ = j.append(1, "b", [task(10, "q", [ann(5, 4, 4, at=60)])], now=T0 + timedelta(minutes=1))
    found = check(view, reg, platform={1})
    assert {a: f.code for a, f in found.items()} == {2: CHANGED_BY_OTHER, 3: UNREGISTERED, 4: PLATFORM_ACCOUNT}
    assert check(late, reg, {1})[5].code == CHANGED_AFTER_SEEN
    assert all(f.detail for f in found.values())
    # no registry (tools, tests): the authorship and first-seen rules still hold
    assert {a: f.code for a, f in check(view, None, {1}).items()} == {2: CHANGED_BY_OTHER, 4: PLATFORM_ACCOUNT}


def test_registry_refuses_the_platform_and_keeps_history():
    reg = AnnotatorRegistry()
    with pytest.raises(RegistryError, match="platform's own account"):
        reg.register(1, "admin@x", platform={1})
    assert reg.register(2, "a@x") and not reg.register(2, "a@x")
    assert reg.kind_of(2) == "person" and reg.kind_of(2, platform={2}) is None
    assert reg.unregister(2) and reg.kind_of(2) is None and len(reg.annotators) == 1
    store = MemoryStore()
    save(store, "annotators/registry.json", reg)
    assert load(store, "annotators/registry.json") == reg
    assert load(store, "missing.json").annotators == []


def test_uncounted_answers_send_the_task_back_for_a_fresh_one():
    t = task(10, "q", [ann(1, 2, 3), ann(2, 3, 3, updated_by=2), ann(3, 4, 3)], overlap=3)
    t["is_labeled"] = True
    # serial: three accounts answered, one answer does not count: open to one more account (overlap 4)
    changes, summary = plan([t], 4, "serial", True, uncounted={2})
    assert [(c.overlap, c.is_labeled) for c in changes] == [(4, False)] and summary.complete == 0
    # parallel: four counted wanted, two counted so far and three accounts present: overlap 4 + 1
    changes, _ = plan([t], 4, "parallel", True, uncounted={2})
    assert [(c.overlap, c.is_labeled) for c in changes] == [(5, False)]
    # a disagreement among the uncounted does not stop the question
    t2 = task(11, "q2", [ann(4, 2, 3), ann(5, 3, 7, updated_by=2)], overlap=2)
    changes, _ = plan([t2], 4, "serial", True, uncounted={5})
    assert [c.reason for c in changes] == [None]


def test_decision_counts_only_what_counts_and_knows_who_answered():
    reg = registry(2, 3, 4, 5, 6, simulated=(6,))
    tasks = [task(10, "q1", [ann(1, 2, 3), ann(2, 3, 3), ann(3, 4, 3), ann(4, 5, 3)]),
             task(11, "q2", [ann(5, 2, 3), ann(6, 3, 3), ann(7, 4, 3), ann(8, 6, 3)]),
             task(12, "q3", [ann(9, 2, 3), ann(10, 3, 3, updated_by=4), ann(11, 4, 3), ann(12, 5, 3)])]
    result = decide_tasks(tasks, {"q1": "3", "q2": "3", "q3": "3"}, registry=reg, platform={1})
    rows = {r["question_id"]: r for r in result.consensus.consensus}
    assert (rows["q1"]["status"], rows["q1"]["answers_source"]) == ("accepted", "people")
    assert (rows["q2"]["status"], rows["q2"]["answers_source"]) == ("accepted", "mixed")
    assert rows["q3"]["status"] == "pending" and len(rows["q3"]["answers"]) == 3
    assert result.integrity_counts() == {CHANGED_BY_OTHER: 1}
    assert [r.code for r in result.rejects if r.code.startswith("integrity.")] == [CHANGED_BY_OTHER]
    # the same answers from the journal alone decide the same
    j = Journal(MemoryStore(), "j")
    view, _ = j.append(3, "b", tasks, now=T0)
    alone = decide_journaled(view, [{"question_id": q, "answer": "3"} for q in ("q1", "q2", "q3")],
                             registry=reg, platform={1})
    assert alone.consensus.consensus == result.consensus.consensus and alone.source == "journal"


def test_checkpoints_bound_what_a_fresh_reader_reads():
    class Counting(MemoryStore):
        gets = 0

        def get_bytes(self, key: str) -> bytes:
            Counting.gets += 1
            return super().get_bytes(key)

    store = Counting()
    writer = Journal(store, "j", checkpoint_every=3)
    anns: list[dict] = []
    for i in range(1, 11):  # ten passes, one new answer each, and a change at pass 5
        anns.append(ann(i, 100 + i, 3))
        if i == 5:
            anns[0] = ann(1, 101, 4, at=99)
        writer.append(1, "b", [task(10, "q", list(anns))], now=T0 + timedelta(minutes=i))
    keys = sorted(store.list("j/1/b/"))
    assert len([k for k in keys if k.endswith(".ckpt.jsonl")]) == 3 and len(keys) == 10 + 3
    Counting.gets = 0
    fresh = Journal(store, "j").view(1, "b")
    assert Counting.gets == 2  # the newest checkpoint and the one segment after it, not 11 objects
    full = Journal(store, "j", checkpoint_every=10**6)
    full._cache[full.folder(1, "b")] = (type(fresh)(), {k for k in keys if k.endswith(".ckpt.jsonl")})
    assert fresh.versions == full.view(1, "b").versions  # the same history as reading every segment
    assert [v["content"] for v in fresh.versions[1]][0] != fresh.latest(1)["content"]
