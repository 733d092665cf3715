"""Parallel shards publish their Data Docs at once and the run's index loses none of them.

Against the real S3 server (SeaweedFS, ``object_store`` fixture): many threads, each with its own
client as each Airflow worker has, publish one shard's site each, finishing their GX work one after
the other over two seconds, and the first worker stalls for a second after each listing it makes (a GC
pause, a starved CPU: what makes a read-modify-write lose). Each
shard writes only its own site and its own marker, and the index is merged from the markers on read,
so every site is listed; the index the run's summary renders links every one. (The previous code had
every shard list the sites and rewrite one ``index.html``: the stalled worker's stale listing was
written last, and the index lost the other shards' sites.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from expectations.runner import docs_sites, publish_docs_site, write_docs_index
from pipelines.store import ObjectStore
from pipelines.store.layout import RunKeys, shard_label

pytestmark = pytest.mark.integration
SHARDS = 24
STAGGER_S = 0.07  # shard n finishes its GX work n * STAGGER_S after the first


class StallingStore(ObjectStore):
    """A worker that stalls for ``stall_s`` after each listing it reads, before its next request."""

    stall_s = 1.0

    def list(self, prefix: str, recursive: bool = True) -> Iterator[str]:
        yield from super().list(prefix, recursive)
        time.sleep(self.stall_s)


def _site(folder: Path) -> list[str]:
    """A small stand-in for a GX site: an index page and one validation page."""
    (folder / "validations").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>site</title>")
    (folder / "validations" / "result.html").write_text("<!doctype html><title>result</title>")
    return ["index.html", "validations/result.html"]


def test_parallel_shards_never_drop_an_index_entry(s3_creds, tmp_path) -> None:
    run = RunKeys("runs", f"race-{uuid.uuid4().hex[:8]}")
    files = _site(tmp_path / "site")
    start = threading.Barrier(SHARDS)

    def shard(n: int) -> str:
        store: Any = (StallingStore if n == 0 else ObjectStore)(s3_creds, "hopchain")  # one client per worker
        start.wait()
        time.sleep(n * STAGGER_S)
        return publish_docs_site(store, run, "instances", shard_label(n), tmp_path / "site", files)

    with ThreadPoolExecutor(SHARDS) as pool:
        pages = list(pool.map(shard, range(SHARDS)))

    store = ObjectStore(s3_creds, "hopchain")
    expected = [f"instances/{shard_label(n)}" for n in range(SHARDS)]
    assert docs_sites(store, run) == expected  # merged on read: nothing lost
    assert all(store.exists(p) for p in pages)
    page = store.get_bytes(write_docs_index(store, run)).decode()
    missing = [s for s in expected if f"href='{s}/index.html'" not in page]
    assert not missing, f"the run's Data Docs index lost {len(missing)} of {SHARDS} sites: {missing}"


def test_a_retried_shard_replaces_its_site_and_keeps_one_entry(object_store, tmp_path) -> None:
    run = RunKeys("runs", f"retry-{uuid.uuid4().hex[:8]}")
    files = _site(tmp_path / "site")
    stale = run.datadocs_site_file("instances", "shard-00000", "validations/earlier-attempt.html")
    object_store.put_bytes(stale, b"old")
    for _ in range(2):
        publish_docs_site(object_store, run, "instances", "shard-00000", tmp_path / "site", files)
    assert docs_sites(object_store, run) == ["instances/shard-00000"]
    assert not object_store.exists(stale)
