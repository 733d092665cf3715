"""The S3 server dies (SIGKILL) in the middle of a stage's writes: the stage fails loudly, and the
rerun after the server is back leaves exactly one complete copy of every output — byte-identical
to a run that never saw the fault.

A private SeaweedFS (own free ports, own home) is killed by its recorded pid, so the session's
shared server is never touched. The kill is injected deterministically between two writes of the
stage (the Nth object written under the run's prefix), i.e. while the stage is half-way through.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3

from hopchain_demo.samples import write_samples
from pipelines.config import load_params
from pipelines.runner import RunEnv
from pipelines.store import ObjectStore, S3Credentials
from tests.support import nightly
from tests.support.faults import kill_group, parquet_rows, read_objects
from tests.support.stack import running_s3_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INPUT = "faults"
IMAGES = 24  # 6 shards of 4 (demo profile)


class KillingStore(ObjectStore):
    """An ObjectStore that runs ``kill`` just before the ``after``-th write under ``watch``."""

    def __init__(self, creds: S3Credentials, bucket: str, watch: str, after: int, kill: Callable[[], object]):
        super().__init__(creds, bucket, retries=1)
        self.watch, self.after, self.kill = watch, after, kill
        self.writes = 0

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        if key.startswith(self.watch):
            self.writes += 1
            if self.writes == self.after:
                self.kill()
        return super().put_bytes(key, data, content_type)


@pytest.fixture()
def private_s3(tmp_path):
    with running_s3_server(tmp_path / "s3home") as svc:
        yield svc


def _creds(svc) -> S3Credentials:
    c = svc.credentials()
    return S3Credentials(c["endpoint"], c["access_key"], c["secret_key"])


def _seed(store: ObjectStore, tmp: Path) -> None:
    coco = write_samples(tmp, IMAGES)
    for f in [coco, *sorted((tmp / "images").iterdir())]:
        store.put_bytes(f"inputs/{INPUT}/{f.relative_to(tmp)}", f.read_bytes(),
                        mimetypes.guess_type(f.name)[0] or "application/octet-stream")


def _restart(svc) -> None:
    svc.start()
    svc.wait_healthy(60)


def test_s3_killed_mid_stage_then_the_rerun_leaves_one_complete_copy_of_each_output(private_s3, tmp_path):
    svc = private_s3
    creds = _creds(svc)
    params = load_params(None, "demo")
    store = ObjectStore(creds, "hopchain")
    _seed(store, tmp_path / "samples")

    clean = RunEnv(params, store, "clean")
    shards = nightly.ingest(clean, INPUT)
    assert len(shards) == IMAGES // params.ingest.shard_size
    for s in shards:
        nightly.run(clean, "detect", s)
        nightly.run(clean, "segment", s)
    expected = read_objects(store, "runs/clean/")

    # 1. killed during ingest's writes (after 5 of its ~19 objects)
    pid_before = svc.processes[0].pid
    dying = KillingStore(creds, "hopchain", "runs/faulty/", 5, lambda: kill_group(svc.processes[0]))
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        nightly.ingest(RunEnv(params, dying, "faulty"), INPUT)
    assert dying.writes == 5 and not svc.running()
    _restart(svc)
    assert svc.processes[0].pid != pid_before
    # whatever made it to the store before the crash is complete, never a torn object
    for key, data in read_objects(store, "runs/faulty/").items():
        if key.endswith(".parquet"):
            parquet_rows(data)
    rerun = RunEnv(params, ObjectStore(creds, "hopchain"), "faulty")  # what the task's retry does
    assert nightly.ingest(rerun, INPUT) == shards

    # 2. killed during segment's writes of shard 2 (after its instances, before rejects/stats)
    for s in shards[:2]:
        nightly.run(rerun, "detect", s)
        nightly.run(rerun, "segment", s)
    nightly.run(rerun, "detect", shards[2])
    dying = KillingStore(creds, "hopchain", "runs/faulty/", 2, lambda: kill_group(svc.processes[0]))
    with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
        nightly.run(RunEnv(params, dying, "faulty"), "segment", shards[2])
    _restart(svc)
    for s in shards[2:]:
        nightly.run(rerun, "detect", s)
        nightly.run(rerun, "segment", s)

    got = read_objects(ObjectStore(creds, "hopchain"), "runs/faulty/")
    # GX results and Data Docs name their pages by run id and time: compare those by count (one site
    # per suite and shard, nothing left over from the killed attempt), every stage output byte for byte.
    def split(objs: dict) -> tuple[dict, dict]:
        docs = {k: v for k, v in objs.items() if k.startswith(("datadocs/", "validation/"))}
        return {k: v for k, v in objs.items() if k not in docs}, docs

    got, got_docs = split(got)
    expected, expected_docs = split(expected)
    assert len(got_docs) == len(expected_docs)
    assert sorted(got) == sorted(expected)  # one copy of each output, nothing extra or missing
    for key, data in got.items():
        if key.endswith(".parquet"):
            assert parquet_rows(data) == parquet_rows(expected[key]), key
        assert data == expected[key], f"{key} differs from the clean run's"
