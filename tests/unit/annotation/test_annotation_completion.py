"""Completion counts distinct completed_by in the annotations, not Label Studio's counters."""

from __future__ import annotations

import json

import pytest

from pipelines.annotation.completion import (
    batch_filter,
    distinct_annotators,
    summarize_completion,
    tasks_query,
)

pytestmark = pytest.mark.unit


def task(qid, users, cancelled=(), stored=None):
    anns = [{"completed_by": u, "was_cancelled": False} for u in users]
    anns += [{"completed_by": u, "was_cancelled": True} for u in cancelled]
    return {
        "data": {"question_id": qid},
        "annotations": anns,
        "total_annotations": len(users) if stored is None else stored,
    }


def test_distinct_users_ignore_duplicates_and_cancelled():
    assert distinct_annotators(task("q", [1, 1, 2], cancelled=[3])) == {1, 2}
    assert distinct_annotators({"annotations": [{"completed_by": {"id": 5}}]}) == {5}


def test_summary_trusts_annotations_over_counters():
    tasks = [
        task("done", [1, 2, 3, 4], stored=2),  # counter wrong low: still complete
        task("dup", [1, 1, 2, 3], stored=4),  # counter says 4 but only 3 distinct users
        task("cancel", [1, 2, 3], cancelled=[4]),
        {**task("labeled", [1, 2]), "is_labeled": True},  # LS says labeled with 2 of 4
    ]
    s = summarize_completion(tasks, 4)
    assert (s.total, s.complete, s.incomplete) == (4, 1, 3)
    assert s.annotators_per_task == {"done": 4, "dup": 3, "cancel": 3, "labeled": 2}
    assert s.counter_mismatches == 2 and not s.all_complete
    assert summarize_completion([], 4).all_complete  # nothing to wait for
    assert json.loads(json.dumps(s.as_dict()))["incomplete"] == 3


def test_batch_query():
    params = tasks_query(3, "run-1", page_size=100)
    assert params["project"] == 3 and params["page_size"] == 100 and params["fields"] == "all"
    assert json.loads(str(params["query"])) == json.loads(batch_filter("run-1"))
    assert "query" not in tasks_query(3, fields="task_only")  # the whole project
    item = json.loads(batch_filter("run-1"))["filters"]["items"][0]
    assert item["filter"] == "filter:tasks:data.batch" and item["value"] == "run-1"


def test_batch_query_bounded_by_the_first_task_id_is_one_and_query():
    """``data.batch == b AND id >= first``: one Data Manager query, the id item on the primary key."""
    query = json.loads(batch_filter("run-1", 1234))["filters"]
    assert query["conjunction"] == "and"
    assert query["items"] == [
        {"filter": "filter:tasks:data.batch", "operator": "equal", "type": "String", "value": "run-1"},
        {"filter": "filter:tasks:id", "operator": "greater_or_equal", "type": "Number", "value": 1234},
    ]
    # the sync and async clients both list with tasks_query: the bound travels in the same query
    assert json.loads(str(tasks_query(3, "run-1", first_task_id=1234)["query"]))["filters"] == query
    # no bound (a record written before it existed): the unbounded filter, exactly as before
    assert batch_filter("run-1", None) == batch_filter("run-1")
    assert len(json.loads(batch_filter("run-1"))["filters"]["items"]) == 1


@pytest.mark.parametrize("bad", [0, -5, True])
def test_a_bound_that_is_no_task_id_is_refused(bad):
    with pytest.raises(ValueError, match="task id"):
        batch_filter("run-1", bad)


def test_a_bound_needs_a_batch():
    with pytest.raises(ValueError, match="batch"):
        tasks_query(3, first_task_id=5)  # an id bound alone would read other batches' tasks
