"""Issue 11 acceptance 2: a run over a batch mixing valid images with every kind of bad input, a model
that answers garbage for some images, and annotations with garbage values completes; every refused
item is kept with its reason, and the dataset card's counts reconcile exactly with the inputs:

* images in      = manifest rows + quarantine rows
* questions      = accepted + rejected + pending
* released       = accepted (less what the release itself drops, with reasons: none here)

Driven through the runner (:mod:`pipelines.runner`, as the Airflow tasks call it; :mod:`tests.support.nightly`) and
``pipelines.release.platform.release_from_store`` against the real S3 server and Label Studio of
the session, in a bucket and a Label Studio project of its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hopchain_demo.samples import write_samples
from pipelines.annotation import tasks as annotation_tasks
from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.labeling import ANSWER_FIELD, NOT_ANSWERABLE
from pipelines.annotation.simulated import answer_result, simulated_annotators
from pipelines.config import OpenAIEndpoint, VLMConfig, load_params
from pipelines.release.platform import release_from_store
from pipelines.runner import RunEnv, summarize
from pipelines.store import ObjectStore, safe_key
from tests.support import nightly
from tests.support.fake_openai import FakeChatServer
from tests.support.image_reader import image_reader
from tests.support.stack import register_annotators

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALID = 8
GOOD_ANSWER = '```json\n[{"bbox_2d": [100, 100, 600, 700], "label": "circle"}]\n```'
GARBAGE = 'Sure! The objects are: {bbox_2d: [12, "x", label: circle'


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def make_inputs(folder: Path) -> tuple[dict[str, bytes], dict, dict[str, str]]:
    """(files by name, COCO instances, expected quarantine code by name)."""
    coco_path = write_samples(folder / "samples", VALID)
    coco = json.loads(coco_path.read_text())
    files = {p.name: p.read_bytes() for p in sorted((folder / "samples" / "images").iterdir())}
    by_name = {im["file_name"].rsplit("/", 1)[-1]: im for im in coco["images"]}
    photo = next(n for n in files if n.lower().endswith((".jpg", ".jpeg")))
    shapes = next(n for n in files if n.endswith(".png"))
    rgb_photo = Image.open(io.BytesIO(files[photo])).convert("RGB")
    rgb_shapes = Image.open(io.BytesIO(files[shapes])).convert("RGB")

    def annotated_copy(name: str, like: str) -> None:  # same pixels/geometry: the same instances
        src = by_name[like]
        new_id = max(im["id"] for im in coco["images"]) + 1
        coco["images"].append({**src, "id": new_id, "file_name": f"images/{name}"})
        next_ann = max(a["id"] for a in coco["annotations"]) + 1
        for k, a in enumerate([a for a in coco["annotations"] if a["image_id"] == src["id"]]):
            coco["annotations"].append({**a, "id": next_ann + k, "image_id": new_id})

    # normalised, not refused: CMYK JPEG, 16-bit grey PNG, EXIF-rotated JPEG (stored sideways)
    files["cmyk.jpg"] = _jpeg(rgb_photo.convert("CMYK"))
    annotated_copy("cmyk.jpg", photo)
    grey16 = (np.asarray(rgb_shapes.convert("L"), dtype=np.uint16) * 257)
    files["grey16.png"] = _png(Image.fromarray(grey16))  # mode I;16
    annotated_copy("grey16.png", shapes)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    files["rotated.jpg"] = _jpeg(rgb_photo.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
    annotated_copy("rotated.jpg", photo)

    refused = {
        "truncated.jpg": ("truncated_or_corrupt", files[photo][: len(files[photo]) // 2]),
        "notes.jpg": ("not_an_image", b"this is a text file, not a photograph\n" * 20),
        "empty.png": ("empty", b""),
        "bomb.png": ("too_many_pixels", _png(Image.new("1", (10000, 9000)))),  # 90 M pixels > max_pixels
        "copy.jpg": ("duplicate", files[photo]),
        # over ingest.max_bytes (set below to the largest other file): refused by its HEAD size, unread
        "huge.jpg": ("too_many_bytes", files[photo] + bytes(max(map(len, files.values())) + 1)),
    }
    for name, (_, data) in refused.items():
        files[name] = data
    return files, coco, {name: code for name, (code, _) in refused.items()}


def _garbage_for(body: dict) -> bool:
    """Deterministic per image: the fake model answers garbage for about half of the images."""
    urls = [part["image_url"]["url"] for m in body["messages"] if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image_url"]
    return hashlib.sha256(urls[0].encode()).digest()[0] % 2 == 0


def test_mixed_bad_inputs_run_completes_and_the_card_reconciles(s3_creds, s3_server, label_studio, tmp_path):
    tag = uuid.uuid4().hex[:8]
    bucket = f"badinputs-{tag}"
    store = ObjectStore(s3_creds, bucket)
    store.ensure_bucket()
    files, coco, expected_quarantine = make_inputs(tmp_path)
    for name, data in files.items():
        store.put_bytes(safe_key("inputs", "mixed", "images", name), data,
                        mimetypes.guess_type(name)[0] or "application/octet-stream")
    store.put_json(safe_key("inputs", "mixed", "instances.json"), coco)
    images_in = len(files)

    with FakeChatServer(lambda body, attempt: GARBAGE if _garbage_for(body) else GOOD_ANSWER) as model:
        base = load_params(None, "demo")
        params = base.model_copy(update={
            "store": base.store.model_copy(update={"bucket": bucket}),
            "ingest": base.ingest.model_copy(update={
                "shard_size": 8, "max_bytes": max(len(d) for n, d in files.items() if n != "huge.jpg")}),
            "vlm": VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url=model.base_url, model="fake-vlm")),
            "detect": base.detect.model_copy(update={"backend": "vlm"}),
            "annotation": base.annotation.model_copy(update={"project_title": f"HopChain bad inputs {tag}"}),
            "release": base.release.model_copy(update={"dvc_remote_prefix": f"badinputs-{tag}"}),
        })
        ls = label_studio.credentials()
        env = RunEnv(params, store, f"bad_{tag}",
                    label_studio=lambda: LabelStudioClient(ls["url"], ls["token"]), image_reader=image_reader(s3_server))
        shards = nightly.ingest(env, "mixed")
        assert len(shards) >= 2
        for s in shards:
            nightly.run(env, "detect", s)
            nightly.run(env, "segment", s)
            nightly.run(env, "questions", s)
            nightly.run(env, "validate", s)
            annotation_tasks.push(env, s)
        summary = summarize(env)

    # -- ingest: every file is either in the manifest or in quarantine with its reason -----------
    manifest = [r for s in shards for r in env.read_table("manifest", s).to_pylist()]
    quarantine = [r for k in store.list(safe_key("runs", env.run_id, "quarantine") + "/")
                  for r in store.get_table(k, "quarantine").to_pylist()]
    assert summary.images + summary.quarantined == images_in
    assert len(manifest) + len(quarantine) == images_in
    codes = {r["uri"].rsplit("/", 1)[-1]: r["code"] for r in quarantine}
    assert all(r["detail"] for r in quarantine)
    assert codes == expected_quarantine, codes
    by_name = {r["uri"].rsplit("/", 1)[-1]: r for r in manifest}
    assert {"cmyk.jpg", "grey16.png", "rotated.jpg"} <= set(by_name)  # normalised, not refused
    rotated, upright = by_name["rotated.jpg"], by_name[next(n for n in by_name if n.endswith(".jpg")
                                                          and n not in ("cmyk.jpg", "rotated.jpg"))]
    assert (rotated["width"], rotated["height"]) == (upright["width"], upright["height"])  # EXIF applied

    # -- the model's garbage answers are detect rejects with reasons; the run went on --------------
    det_rejects = [r for s in shards for r in store.get_table(env.keys.rejects("detect", s)).to_pylist()]
    detections = sum(len(env.read_table("detections", s)) for s in shards)
    assert det_rejects and detections
    assert all(r["code"] == "answer.unparseable" and GARBAGE in r["raw"] for r in det_rejects)
    detected = {d for s in shards for d in env.read_table("detections", s)["image_id"].to_pylist()}
    assert len(det_rejects) + len(detected) == len(manifest)

    # -- annotators: valid answers, disagreement, missing answers and garbage values ---------------
    questions = {q["question_id"]: q for s in shards for q in env.read_table("questions", s).to_pylist()}
    assert len(questions) >= 8  # fewer since issue 29: no count or rank among fewer than three
    project_id = annotation_tasks.pushed_batches(env)[0].project_id
    with LabelStudioClient(ls["url"], ls["token"]) as admin:
        tasks = sorted(admin.iter_tasks(project_id, fields="task_only"),
                       key=lambda t: t["data"]["question_id"])
        annotators = simulated_annotators(admin, admin.token, 4)
    register_annotators(env, [a.client for a in annotators], "simulated")
    assert len(tasks) == len(questions)
    garbage_results = [
        [{"from_name": ANSWER_FIELD, "to_name": "image", "type": "number", "value": {"number": "three"}}],
        answer_result(None),  # "answerable" without a number
        answer_result(2, extra=[{"from_name": "secret_field", "to_name": "image", "type": "textarea",
                                 "value": {"text": ["x"]}}]),
        [],
        answer_result(1, verdict="definitely"),
    ]
    plan: Counter[str] = Counter()
    try:
        for i, task in enumerate(tasks):
            truth = questions[task["data"]["question_id"]]["answer"]
            kind = ("garbage", "disagree", "missing", "not_answerable", "unanimous", "unanimous")[i % 6]
            plan[kind] += 1
            for k, a in enumerate(annotators):
                if kind == "missing" and k >= 2:
                    continue
                if kind == "garbage" and k == 0:
                    result = garbage_results[(i // 6) % len(garbage_results)]
                elif kind == "disagree" and k == 3:
                    result = answer_result(float(truth) + 1)
                elif kind == "not_answerable":
                    result = answer_result(None, NOT_ANSWERABLE)
                else:
                    result = answer_result(float(truth))
                a.client.create_annotation(int(task["id"]), result, lead_time_s=3.0)
    finally:
        for a in annotators:
            a.client.close()

    decided = annotation_tasks.decide(env, annotation_tasks.open_batches(env))
    assert decided.annotations_rejected == plan["garbage"]  # each garbage value is a reject, with reason
    consensus = [r for b in decided.batches
                 for r in store.get_table(env.ledger.consensus_table_key(b, "consensus")).to_pylist()]
    status = Counter(c["status"] for c in consensus)
    assert status["accepted"] == plan["unanimous"]
    assert status["rejected"] == plan["disagree"] + plan["not_answerable"]
    assert status["pending"] == plan["missing"] + plan["garbage"]  # a garbage answer does not count as one
    assert sum(status.values()) == len(questions)
    rejects = [r for b in decided.batches
               for r in store.get_table(env.ledger.consensus_table_key(b, "rejects")).to_pylist()]
    assert len([r for r in rejects if r["stage"] == "annotation"]) == plan["garbage"]
    assert all(r["code"] and r["detail"] for r in rejects)

    # -- the release and its card -----------------------------------------------------------------
    record = release_from_store(params, store, env.run_id, home=tmp_path / "home")
    metrics = record.metrics
    assert metrics["questions_generated"] == len(questions)
    assert metrics["consensus"] == {"accepted": status["accepted"], "rejected": status["rejected"],
                                    "pending": status["pending"], "total": len(questions)}
    assert metrics["released"]["questions"] + metrics["dropped"] == status["accepted"]
    assert metrics["dropped"] == 0 and record.questions == status["accepted"]
    released_images = {questions[c["question_id"]]["image_id"] for c in consensus
                       if c["status"] == "accepted"}
    assert metrics["released"]["images"] == len(released_images)
    card = store.get_bytes(env.ledger.release_file_key(record.tag, "README.md")).decode()
    for name in ("accepted", "rejected", "pending"):
        assert f"| {name} | {status[name]} |" in card, name
