"""The bucket's key layout: the one module that builds object keys.

Every other module asks this one for a key (a layering test forbids key building elsewhere). The
top-level prefixes come from ``params.store`` (:class:`pipelines.config.StoreConfig`); the defaults
give this tree (``NNNNN``: the shard number, five digits)::

    inputs/<input>/...                                        images handed to ingest (+ instances.json)
    runs/<run_id>/
        <stage>/shard-NNNNN.parquet                           manifest, quarantine, detections, instances, questions
        rejects/<stage>/shard-NNNNN.parquet                   refused items (contract ``rejects``)
        stats/<stage>/shard-NNNNN.json                        counts per task
        ingest/plan.json                                      what ingest listed and sharded
        ingest/shipped/shard-NNNNN.json                       the shard's slice of the input's instances.json
        validation/<suite>/<label|result>.json                a GX result (report + GX's JSON)
        validation/<label>.<suite>[+<suite>...].json          the outcome of one validation step
        datadocs/<suite>[/<label>]/...                        one GX Data Docs site (index.html, validations/...)
        datadocs/_sites/<suite>[/<label>]                     empty marker: that site exists (one per writer)
        datadocs/index.html                                   the run's Data Docs index (rendered from the markers)
        summary.json                                          RunSummary
    runs/_index/...                                           newest-first index of runs (below)
    batches/<batch_id>.json                                   BatchRecord
    batches/_index/open/<batch_id>                            empty marker per open batch
    consensus/<batch_id>.json                                 ConsensusRecord
    consensus/<batch_id>/<table>.parquet                      its tables (annotations, consensus, rejects, audit)
    releases/<tag>.json                                       ReleaseRecord
    releases/<tag>/README.md, card/..., index.html            the dataset card as released
    <runs|batches|consensus|releases>/_index/newest-first/<inverted ms>.<id>   empty markers, newest first
    <runs|batches|consensus|releases>/_index/built.json       the index of that prefix is complete
    annotation-journal/<project_id>/<batch_id>/<seen_at>-<sha256>.jsonl        a journal segment
    annotation-journal/<project_id>/<batch_id>/<seen_at>-<sha256>.ckpt.jsonl   a journal checkpoint
    annotators/registry.json                                  the registered annotators
    annotators/pseudonym.key                                  the generated pseudonym key (no env var set)
    annotators/image-key-probe                                read with Label Studio's image key before a push

and, in the DVC remote's bucket, ``<dvc_remote_prefix>/files/md5/<2 hex>/<30 hex>`` (DVC 3's own layout).

A run root of the stage CLIs (a folder or an ``s3://`` prefix) holds ``<table>/shard-NNNNN.parquet``
(:func:`shard_file`). Keys are always joined by :func:`safe_key`, so a user-supplied name can never
escape the prefix it is placed under. Every key here is byte-identical to what earlier releases wrote
(``tests/unit/test_layout.py`` pins the whole table): stored data stays findable.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import StoreConfig

__all__ = [
    "SHARD_GLOB", "BucketLayout", "KeyError_", "RunKeys", "batch_id_for", "dvc_remote_object", "is_segment",
    "safe_key", "shard_file", "shard_label", "shard_of",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-/=+@]")
_SHARD = re.compile(r"shard-(\d+)\.[A-Za-z]+$")
_INDEX = "_index"
_DOC_SITES = "_sites"


class KeyError_(ValueError):
    """A key that would escape its prefix or is otherwise unusable."""


def safe_key(prefix: str, *parts: str) -> str:
    """Join ``parts`` under ``prefix`` so the result cannot leave ``prefix``.

    Backslashes become slashes, ``.``/``..``/empty segments are dropped, and characters outside
    a conservative set are replaced by ``_``. Raises :class:`KeyError_` if nothing is left.
    """
    segments: list[str] = []
    for part in parts:
        for seg in str(part).replace("\\", "/").split("/"):
            seg = _UNSAFE.sub("_", seg.strip())
            if seg in ("", ".", ".."):
                continue
            segments.append(seg)
    if not segments:
        raise KeyError_(f"empty object key from {parts!r}")
    prefix = prefix.strip("/")
    key = posixpath.join(prefix, *segments) if prefix else posixpath.join(*segments)
    if prefix and not key.startswith(prefix + "/"):
        raise KeyError_(f"key {key!r} escapes prefix {prefix!r}")
    return key


def is_segment(name: str) -> bool:
    """Whether ``name`` is one key segment as it is (a run id, a folder name): :func:`safe_key` keeps it whole."""
    try:
        return safe_key("", name) == name
    except KeyError_:
        return False


def _folder(prefix: str, *parts: str) -> str:
    """A "folder" key (ends with ``/``): what a listing takes."""
    return (safe_key(prefix, *parts) if parts else prefix.strip("/")) + "/"


#: What :func:`shard_file` names match (a glob of a local run root).
SHARD_GLOB = "shard-*.parquet"


def shard_label(shard: int) -> str:
    """``shard-NNNNN``: a shard as a key segment (a validation label, a file stem)."""
    return f"shard-{int(shard):05d}"


def shard_file(shard: int, suffix: str = ".parquet") -> str:
    """``shard-NNNNN.parquet`` (or ``shard-NNNNN<suffix>``): the name of one shard's object or file."""
    return shard_label(shard) + suffix


def shard_of(key: str) -> int | None:
    """The shard number of a key or path ending in ``shard-NNNNN.<ext>`` (None for any other)."""
    m = _SHARD.search(key)
    return int(m.group(1)) if m else None


def batch_id_for(run_id: str, shard: int) -> str:
    """``<run_id>.shard-NNNNN`` (the run id cleaned): a batch id that is a safe object-key segment and a
    Label Studio filter value."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")
    return f"{clean}.{shard_label(shard)}"


def dvc_remote_object(remote_prefix: str, md5: str) -> str:
    """``<remote_prefix>/files/md5/<2>/<rest>``: where DVC 3 keeps an object of content hash ``md5``."""
    return f"{remote_prefix.strip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


class RunKeys:
    """Object keys of one run: ``<runs>/<run_id>/...`` (see the module docstring)."""

    def __init__(self, runs_prefix: str, run_id: str) -> None:
        self.runs_prefix = runs_prefix
        self.run_id = run_id

    def _key(self, *parts: str) -> str:
        return safe_key(self.runs_prefix, self.run_id, *parts)

    @property
    def prefix(self) -> str:
        """``<runs>/<run_id>/``."""
        return _folder(self.runs_prefix, self.run_id)

    def table(self, stage: str, shard: int) -> str:
        """``<runs>/<run_id>/<stage>/shard-NNNNN.parquet``: one shard of a stage's output table."""
        return self._key(stage, shard_file(shard))

    def stage_file(self, stage: str, name: str) -> str:
        """``<runs>/<run_id>/<stage>/<name>``."""
        return self._key(stage, name)

    def stage_prefix(self, stage: str) -> str:
        """``<runs>/<run_id>/<stage>/``: every shard of a stage's table."""
        return _folder(self.runs_prefix, self.run_id, stage)

    def shard_document(self, stage: str, name: str, shard: int) -> str:
        """``<runs>/<run_id>/<stage>/<name>/shard-NNNNN.json``: a JSON document a stage hands one shard of a
        later stage (:attr:`pipelines.runner.ShardResult.documents`)."""
        return self._key(stage, name, shard_file(shard, ".json"))

    def rejects(self, stage: str, shard: int) -> str:
        """``<runs>/<run_id>/rejects/<stage>/shard-NNNNN.parquet``."""
        return self._key("rejects", stage, shard_file(shard))

    def stats(self, stage: str, shard: int) -> str:
        """``<runs>/<run_id>/stats/<stage>/shard-NNNNN.json``."""
        return self._key("stats", stage, shard_file(shard, ".json"))

    def stats_prefix(self) -> str:
        """``<runs>/<run_id>/stats/``."""
        return _folder(self.runs_prefix, self.run_id, "stats")

    def stats_stage(self, key: str) -> str:
        """The stage of a key under :meth:`stats_prefix` (``.../stats/<stage>/shard-NNNNN.json``)."""
        return key[len(self.stats_prefix()):].split("/", 1)[0]

    def plan(self) -> str:
        """``<runs>/<run_id>/ingest/plan.json``."""
        return self._key("ingest", "plan.json")

    def validation(self, name: str) -> str:
        """``<runs>/<run_id>/validation/<name>``."""
        return self._key("validation", name)

    def validation_step(self, label: str, suites: list[str]) -> str:
        """``<runs>/<run_id>/validation/<label>.<suite>+<suite>.json``: the outcome of one validation step."""
        return self.validation(f"{label}.{'+'.join(suites)}.json")

    def validation_result(self, suite: str, label: str | None) -> str:
        """``<runs>/<run_id>/validation/<suite>/<label or 'result'>.json``: one full GX result."""
        return self._key("validation", suite, f"{label or 'result'}.json")

    def datadocs_prefix(self) -> str:
        """``<runs>/<run_id>/datadocs/``."""
        return _folder(self.runs_prefix, self.run_id, "datadocs")

    def datadocs_index(self) -> str:
        """``<runs>/<run_id>/datadocs/index.html``: the run's index of Data Docs sites."""
        return self._key("datadocs", "index.html")

    def _site(self, suite: str, label: str | None) -> tuple[str, ...]:
        return (suite, *([label] if label else []))

    def datadocs_site(self, suite: str, label: str | None) -> str:
        """``<runs>/<run_id>/datadocs/<suite>[/<label>]/``: one GX Data Docs site."""
        return _folder(self.runs_prefix, self.run_id, "datadocs", *self._site(suite, label))

    def datadocs_site_file(self, suite: str, label: str | None, rel: str) -> str:
        """A file of a site (``rel``: its path inside the site, e.g. ``index.html``)."""
        return self._key("datadocs", *self._site(suite, label), rel)

    def datadocs_sites_root(self) -> str:
        """``<runs>/<run_id>/datadocs/_sites/``: one marker per site (the index is merged from them)."""
        return _folder(self.runs_prefix, self.run_id, "datadocs", _DOC_SITES)

    def datadocs_site_marker(self, suite: str, label: str | None) -> str:
        """``<runs>/<run_id>/datadocs/_sites/<suite>[/<label>]``: the empty marker of one site. Each
        validation writes its own, so parallel shards never race on one object."""
        return self._key("datadocs", _DOC_SITES, *self._site(suite, label))

    def datadocs_site_of_marker(self, key: str) -> str:
        """``<suite>[/<label>]``: the site (relative to :meth:`datadocs_prefix`) a marker stands for."""
        return key[len(self.datadocs_sites_root()):]

    def summary(self) -> str:
        """``<runs>/<run_id>/summary.json``."""
        return self._key("summary.json")


class BucketLayout:
    """Every key of the platform bucket, from the prefixes of ``params.store`` (see the module doc).

    Pure: building a layout or a key touches no store.
    """

    def __init__(self, store: StoreConfig | None = None) -> None:
        if store is None:
            from pipelines.config import StoreConfig

            store = StoreConfig()
        self.config = store

    # -- roots -------------------------------------------------------------------------------------
    @property
    def runs_root(self) -> str:
        """``<runs>/``: one folder per run (plus ``_index/``)."""
        return _folder(self.config.runs_prefix)

    @property
    def runs_index_root(self) -> str:
        """``<runs>/_index/``: not a run (a listing of :attr:`runs_root` skips it)."""
        return _folder(self.config.runs_prefix, _INDEX)

    @property
    def record_prefixes(self) -> tuple[str, str, str, str]:
        """The prefixes with a newest-first index: runs, batches, consensus, releases."""
        c = self.config
        return c.runs_prefix, c.batches_prefix, c.consensus_prefix, c.releases_prefix

    @property
    def document_prefixes(self) -> tuple[str, ...]:
        """Prefixes of the documents the Airflow page may proxy (Data Docs, dataset cards)."""
        return _folder(self.config.runs_prefix), _folder(self.config.releases_prefix)

    @property
    def image_prefixes(self) -> tuple[str, ...]:
        """Prefixes an image of the platform bucket may live under (inputs, runs)."""
        return _folder(self.config.inputs_prefix), _folder(self.config.runs_prefix)

    # -- runs ----------------------------------------------------------------------------------------
    def run(self, run_id: str) -> RunKeys:
        return RunKeys(self.config.runs_prefix, run_id)

    def run_summary_of(self, run_folder: str) -> str:
        """``<run folder>summary.json`` for a folder as :meth:`ObjectStore.list_prefixes` returns it."""
        return run_folder.rstrip("/") + "/summary.json"

    # -- inputs --------------------------------------------------------------------------------------
    def input_prefix(self, name: str) -> str:
        """``<inputs>/<name>`` (no trailing slash): a folder of images handed to ingest. ``name`` may
        already start with ``<inputs>/``."""
        inputs = self.config.inputs_prefix
        return safe_key(inputs, name.removeprefix(inputs + "/"))

    def input_key(self, name: str, *parts: str) -> str:
        """``<inputs>/<name>/<parts>``: one object of an input folder."""
        return safe_key(self.input_prefix(name), *parts)

    def input_uri(self, bucket: str, name: str) -> str:
        """``s3://<bucket>/<inputs>/<name>``: what ingest lists."""
        return f"s3://{bucket}/{self.input_prefix(name)}"

    @staticmethod
    def coco_instances(input_prefix: str) -> str:
        """``<input prefix>/instances.json``: the COCO instances shipped with an input folder."""
        return f"{input_prefix.rstrip('/')}/instances.json"

    # -- batches and decisions -----------------------------------------------------------------------
    def batch(self, batch_id: str) -> str:
        """``<batches>/<batch_id>.json``."""
        return safe_key(self.config.batches_prefix, f"{batch_id}.json")

    def open_marker(self, batch_id: str) -> str:
        """``<batches>/_index/open/<batch_id>``."""
        return safe_key(self.config.batches_prefix, _INDEX, "open", batch_id)

    def open_markers_root(self) -> str:
        """``<batches>/_index/open/``."""
        return _folder(self.config.batches_prefix, _INDEX, "open")

    def consensus(self, batch_id: str) -> str:
        """``<consensus>/<batch_id>.json``."""
        return safe_key(self.config.consensus_prefix, f"{batch_id}.json")

    def consensus_table(self, batch_id: str, table: str) -> str:
        """``<consensus>/<batch_id>/<table>.parquet``."""
        return safe_key(self.config.consensus_prefix, batch_id, f"{table}.parquet")

    def consensus_tables(self, batch_id: str) -> str:
        """``<consensus>/<batch_id>/``."""
        return _folder(self.config.consensus_prefix, batch_id)

    # -- releases ------------------------------------------------------------------------------------
    def release(self, tag: str) -> str:
        """``<releases>/<tag>.json``."""
        return safe_key(self.config.releases_prefix, f"{tag}.json")

    def release_file(self, tag: str, *parts: str) -> str:
        """``<releases>/<tag>/<parts>``: a file of a release's card (README.md, card/..., index.html)."""
        return safe_key(self.config.releases_prefix, tag, *parts)

    # -- annotation journal and annotators -----------------------------------------------------------
    @property
    def journal_root(self) -> str:
        """``<journal>`` (no trailing slash): the annotation journal (:mod:`pipelines.annotation.journal`)."""
        return self.config.journal_prefix.strip("/")

    @staticmethod
    def journal_folder(journal_root: str, project_id: int, batch_id: str) -> str:
        """``<journal>/<project_id>/<batch_id>/``: one batch's segments and checkpoints."""
        return _folder(journal_root, str(int(project_id)), batch_id)

    @staticmethod
    def journal_segment(folder: str, stamp: str, sha256: str, checkpoint: bool = False) -> str:
        """``<folder><stamp>-<sha256>.jsonl`` (``.ckpt.jsonl`` for a checkpoint)."""
        return f"{folder}{stamp}-{sha256}{'.ckpt' if checkpoint else ''}.jsonl"

    @property
    def annotators_registry(self) -> str:
        """``<annotators>/registry.json`` (:mod:`pipelines.annotation.registry`)."""
        return safe_key(self.config.annotators_prefix, "registry.json")

    @property
    def pseudonym_key(self) -> str:
        """``<annotators>/pseudonym.key``: a generated key, when ``HOPCHAIN_PSEUDONYM_KEY`` is not set."""
        return safe_key(self.config.annotators_prefix, "pseudonym.key")

    @property
    def image_key_probe(self) -> str:
        """``<annotators>/image-key-probe``: what each push proves Label Studio's image key can read and
        cannot overwrite (:mod:`pipelines.annotation.image_key`)."""
        return safe_key(self.config.annotators_prefix, "image-key-probe")

    # -- indexes of record prefixes ------------------------------------------------------------------
    @staticmethod
    def records_root(prefix: str) -> str:
        """``<prefix>/``: the records of one kind (``<id>.json``), listed one level deep."""
        return _folder(prefix)

    @staticmethod
    def index_built(prefix: str) -> str:
        """``<prefix>/_index/built.json``: the indexes of ``prefix`` are complete."""
        return safe_key(prefix, _INDEX, "built.json")

    @staticmethod
    def newest_first_root(prefix: str) -> str:
        """``<prefix>/_index/newest-first/``."""
        return _folder(prefix, _INDEX, "newest-first")

    @staticmethod
    def newest_first_marker(prefix: str, inverted_ms: str, record_id: str) -> str:
        """``<prefix>/_index/newest-first/<inverted ms>.<id>`` (one sanitised segment)."""
        leaf = safe_key("x", f"{inverted_ms}.{record_id}").removeprefix("x/")
        return BucketLayout.newest_first_root(prefix) + leaf
