"""Label Studio dies (SIGKILL) in the middle of a push: the push fails clearly, nothing is recorded
as pushed, and the retry after the restart completes the batch without a single duplicate task.

Uses the session's Label Studio (killed by its recorded pid and started again; it is healthy when
the test ends), a project and a bucket of its own on the session's S3 server.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections import Counter

import httpx
import pytest

from hopchain_demo.samples import write_samples
from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.client import LabelStudioClient
from pipelines.config import load_params
from pipelines.runner import RunEnv
from pipelines.store import ObjectStore, safe_key
from pipelines.store.ledger import batch_id_for
from tests.support import nightly
from tests.support.faults import kill_group
from tests.support.image_reader import image_reader

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class DyingLabelStudio(LabelStudioClient):
    """A client after whose ``kill_after``-th import the server is killed (before the next one)."""

    def __init__(self, url: str, token: str, kill_after: int, kill) -> None:
        super().__init__(url, token, retries=1)
        self.kill_after, self.kill = kill_after, kill
        self.imports = 0

    def import_tasks(self, project_id: int, tasks: list[dict]) -> int:
        if self.imports == self.kill_after:
            self.kill()
        self.imports += 1
        return super().import_tasks(project_id, tasks)


def test_label_studio_down_during_push_then_the_retry_leaves_no_duplicates(label_studio, s3_creds, s3_server, tmp_path):
    tag = uuid.uuid4().hex[:8]
    store = ObjectStore(s3_creds, f"faults-push-{tag}")
    store.ensure_bucket()
    coco = write_samples(tmp_path, 8)
    for f in [coco, *sorted((tmp_path / "images").iterdir())]:
        store.put_bytes(safe_key("inputs", "push", str(f.relative_to(tmp_path))), f.read_bytes(),
                        mimetypes.guess_type(f.name)[0] or "application/octet-stream")
    params = load_params(None, "demo")
    params = params.model_copy(update={"annotation": params.annotation.model_copy(
        update={"project_title": f"HopChain push fault {tag}", "import_batch_size": 2})})
    creds = label_studio.credentials()
    ls = lambda: LabelStudioClient(creds["url"], creds["token"])

    env = RunEnv(params, store, f"push_{tag}", label_studio=ls, image_reader=image_reader(s3_server))
    assert nightly.ingest(env, "push", shard_size=8) == [0]
    nightly.run(env, "detect", 0)
    nightly.run(env, "segment", 0)
    nightly.run(env, "questions", 0)
    questions = env.read_table("questions", 0)["question_id"].to_pylist()
    assert len(questions) > 4  # three import requests at least

    dying = DyingLabelStudio(creds["url"], creds["token"], 2, lambda: kill_group(label_studio.processes[0]))
    failing = RunEnv(params, store, f"push_{tag}", label_studio=lambda: dying, image_reader=image_reader(s3_server))
    with pytest.raises(httpx.ConnectError, match="[Cc]onnection refused"):
        annotation_tasks.push(failing, 0)
    assert dying.imports == 3 and not label_studio.running()
    # a failed push is not recorded as pushed
    assert not store.exists(safe_key("batches", f"{batch_id_for(env.run_id, 0)}.json"))

    label_studio.start()
    label_studio.wait_healthy(120)
    record = annotation_tasks.push(env, 0)  # the task's retry
    assert record.status == "open" and record.questions == len(questions)
    assert 0 < record.created_tasks < len(questions)  # the first two requests had landed
    again = annotation_tasks.push(env, 0)  # and a second retry creates nothing
    assert again.created_tasks == 0

    with ls() as client:
        tasks = list(client.iter_tasks(int(record.project_id), fields="task_only"))
        bounded = list(client.iter_tasks(int(record.project_id), batch=record.batch_id, fields="task_only",
                                         first_task_id=record.first_task_id))
        per_question = Counter(t["data"]["question_id"] for t in tasks)
        client.delete_project(int(record.project_id))
    assert set(per_question) == set(questions)
    assert set(per_question.values()) == {1}, [q for q, n in per_question.items() if n > 1]
    # the record's id bound is the first try's lowest task: the batch read by it is whole
    assert record.first_task_id == again.first_task_id == min(int(t["id"]) for t in tasks)
    assert sorted(int(t["id"]) for t in bounded) == sorted(int(t["id"]) for t in tasks)
