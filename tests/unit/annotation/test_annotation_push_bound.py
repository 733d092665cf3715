"""The id bound a push records on its batch (``BatchRecord.first_task_id``), against an in-memory Label
Studio that numbers tasks as the real one does (each new task above every existing one) and answers the
push's Data Manager filters: a batch read with ``data.batch == b AND id >= bound`` returns every task of
the batch, also when its tasks came from two tries with another batch's tasks pushed in between, or when
one of its questions was already held by an earlier batch. (The same cases run against the real Label
Studio in tests/integration/test_label_studio_annotation.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.annotation.client import ImportedTasks
from pipelines.annotation.push import push_questions

pytestmark = pytest.mark.unit


class MemoryLabelStudio:
    """Tasks in a list; ids from a counter; ``fail_after`` imports succeed before one raises."""

    def __init__(self, with_ids: bool = True) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.next_id = 100
        self.with_ids = with_ids
        self.fail_after: int | None = None

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> ImportedTasks:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise ConnectionError("Label Studio went away")
            self.fail_after -= 1
        ids = []
        for t in tasks:
            self.tasks.append({"id": self.next_id, "data": dict(t["data"])})
            ids.append(self.next_id)
            self.next_id += 1
        return ImportedTasks(len(ids), tuple(ids) if self.with_ids else None)

    def iter_tasks(self, project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500,
                   query: str | None = None, first_task_id: int | None = None) -> Iterator[dict[str, Any]]:
        items = json.loads(query)["filters"]["items"] if query else []
        for t in self.tasks:
            if batch is not None and t["data"]["batch"] != batch:
                continue
            if first_task_id is not None and t["id"] < first_task_id:
                continue
            if all(t["data"][i["filter"].removeprefix("filter:tasks:data.")] in i["value"] for i in items):
                yield t

    def batch(self, batch: str, first_task_id: int | None = None) -> list[str]:
        return sorted(t["data"]["question_id"] for t in self.iter_tasks(1, batch, first_task_id=first_task_id))


def questions(n: int, prefix: str) -> list[dict[str, str]]:
    return [{"question_id": f"{prefix}-{i}", "image_id": f"{prefix}-img{i // 2}", "question": "How many?"}
            for i in range(n)]


def url(image_id: str) -> str:
    return f"s3://b/{image_id}.jpg"


def test_a_first_push_bounds_its_batch_by_its_first_created_task() -> None:
    ls = MemoryLabelStudio()
    push_questions(ls, 1, questions(6, "old"), url, "night-1")  # ids 100..105
    report = push_questions(ls, 1, questions(5, "new"), url, "night-2", batch_size=2)
    assert report.first_task_id == 106
    assert ls.batch("night-2", report.first_task_id) == ls.batch("night-2") == [f"new-{i}" for i in range(5)]


def test_a_batch_pushed_in_two_tries_with_another_batch_between_is_read_whole() -> None:
    """Try 1 lands one import and dies; another batch is pushed; try 2 finds try 1's tasks (lower ids than
    the other batch's) and creates the rest above it: the bound is try 1's lowest id, not try 2's."""
    ls = MemoryLabelStudio()
    push_questions(ls, 1, questions(4, "older"), url, "night-0")  # 100..103
    ls.fail_after = 1
    with pytest.raises(ConnectionError):
        push_questions(ls, 1, questions(6, "mine"), url, "night-1", batch_size=2)
    ls.fail_after = None
    assert ls.batch("night-1") == ["mine-0", "mine-1"]  # 104, 105
    between = push_questions(ls, 1, questions(3, "other"), url, "night-2")  # 106..108
    retry = push_questions(ls, 1, questions(6, "mine"), url, "night-1", batch_size=2)  # 109..112
    assert (retry.created, retry.already_present, retry.first_task_id) == (4, 2, 104)
    assert between.first_task_id == 106
    assert ls.batch("night-1", retry.first_task_id) == [f"mine-{i}" for i in range(6)]
    assert ls.batch("night-2", between.first_task_id) == ["other-0", "other-1", "other-2"]
    again = push_questions(ls, 1, questions(6, "mine"), url, "night-1")  # a third try creates nothing
    assert (again.created, again.first_task_id) == (0, 104)


def test_a_question_an_earlier_batch_holds_stays_there_and_the_bound_covers_the_rest() -> None:
    ls = MemoryLabelStudio()
    push_questions(ls, 1, questions(2, "mine"), url, "night-1")  # mine-0, mine-1: 100, 101
    push_questions(ls, 1, questions(3, "x"), url, "night-2")  # 102..104
    report = push_questions(ls, 1, questions(4, "mine"), url, "night-3")  # mine-2, mine-3: 105, 106
    assert report.held_elsewhere == {"mine-0": "night-1", "mine-1": "night-1"}
    assert report.first_task_id == 105  # the batch holds only its own two tasks
    assert ls.batch("night-3", report.first_task_id) == ls.batch("night-3") == ["mine-2", "mine-3"]


def test_the_bound_is_never_guessed() -> None:
    """A server that does not say the created ids: no bound (read unbounded) unless the batch already held
    a task (then its lowest, as every new task gets a higher id); a batch of held questions only: none."""
    ls = MemoryLabelStudio(with_ids=False)
    assert push_questions(ls, 1, questions(4, "a"), url, "night-1").first_task_id is None
    ls.tasks = [t for t in ls.tasks if t["data"]["question_id"] != "a-3"]  # deleted: the retry re-creates it
    assert push_questions(ls, 1, questions(4, "a"), url, "night-1").first_task_id == 100
    assert push_questions(ls, 1, questions(4, "a"), url, "night-9").first_task_id is None  # all held elsewhere
