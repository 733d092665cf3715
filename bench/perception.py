"""Perception throughput: images/s per detect and segment backend, and the mask-encoding share.

    OMP_NUM_THREADS=1 .venv/bin/python bench/perception.py [--images 8] [--size 640x480] [--full-size]

Without CUDA: tiny random-weight models on CPU (the code path, not the real cost). With CUDA
(or ``--full-size``): full-size architectures with random weights (Qwen3-VL-8B shapes, SAM3,
SAM2.1 hiera-large / hiera-tiny in transformers) in bf16 — the real compute cost. Prints the
machine, batch size, dtype and device of every row; the last column checks that RLE encoding is
under 5% of the segment stage's wall time. Models are built under bench/_work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")




def scene_images(n: int, width: int, height: int) -> list:
    """Rendered shapes scenes resized to the bench size (something for the models to look at)."""
    from hopchain_demo.samples import shapes_scene
    from pipelines.ingest.decode import ImageItem

    out = []
    for k in range(n):
        scene = shapes_scene(seed=100 + k, width=width, height=height)
        out.append(ImageItem(f"bench-{k}", Image.fromarray(scene.rgb)))
    return out


def detections_for(items: list, boxes_per_image: int, categories: list[str]) -> pa.Table:
    from pipelines.contracts import to_table

    rows = []
    rng = np.random.default_rng(0)
    for item in items:
        w, h = item.image.size
        for k in range(boxes_per_image):
            x, y = float(rng.uniform(0, w * 0.6)), float(rng.uniform(0, h * 0.6))
            rows.append({"image_id": item.image_id, "category": categories[k % len(categories)],
                         "bbox": [x, y, w * 0.3, h * 0.3], "score": 1.0, "source": "bench"})
    return to_table(rows, "detections")


def timed(fn, repeats: int):  # type: ignore[no-untyped-def]
    fn()  # warm-up (lazy init, kernels, allocator)
    best = float("inf")
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-size", action="store_true", help="full-size random-weight models (needs a GPU)")
    parser.add_argument("--only", default="", help="comma list: qwen3vl,openai,sam3,sam2,sam2_hf")
    args = parser.parse_args()

    import torch

    from pipelines.config import DetectConfig, ModelRef, OpenAIEndpoint, SegmentConfig, VLMConfig
    from pipelines.detect.stage import Detector
    from pipelines.segment.stage import Segmenter
    from tests.support import tiny_models
    from tests.support.fake_openai import FakeChatServer

    cuda = torch.cuda.is_available()
    full = args.full_size or cuda
    device = "cuda" if cuda else "cpu"
    dtype = "bfloat16" if cuda else "float32"
    if not cuda:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = ROOT / "bench" / "_work" / ("full" if full else "tiny")
    only = set(filter(None, args.only.split(",")))
    items = scene_images(args.images, width, height)
    batch = 8 if cuda else 4
    machine = f"{cpu_model()} ({os.cpu_count()} cores)"
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    print(f"machine: {machine}; gpu: {gpu}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"models: {'full-size' if full else 'tiny'} random weights; images: {args.images} x {width}x{height}")
    header = f"{'stage':8} {'backend':9} {'device':6} {'dtype':9} {'batch':>5} {'img/s':>9} {'ms/img':>8} {'encode %':>9}  check"
    print(header)
    print("-" * len(header))

    def row(stage: str, backend: str, seconds: float, bsz: int, dt: str, dev: str, encode: float | None) -> None:
        ips = len(items) / seconds
        enc = "" if encode is None else f"{100 * encode:8.2f}%"
        check = "" if encode is None else ("ok (<5%)" if encode < 0.05 else "OVER 5%")
        print(f"{stage:8} {backend:9} {dev:6} {dt:9} {bsz:5d} {ips:9.2f} {1000 / ips:8.1f} {enc:>9}  {check}")

    if not only or "qwen3vl" in only:
        path = tiny_models.build_qwen3vl(work / "qwen3vl", full_size=full, device=device, dtype=dtype)
        stage = Detector(DetectConfig(backend="vlm", max_new_tokens=64),
                            VLMConfig(backend="qwen3vl", qwen3vl=ModelRef(model=str(path), device=device,
                                                                          dtype=dtype, batch_size=batch)))
        stage.setup()
        secs, _ = timed(lambda: stage.process(items), args.repeats)
        stage.teardown()
        row("detect", "qwen3vl", secs, batch, dtype, device, None)

    if not only or "openai" in only:
        answer = '```json\n[{"bbox_2d": [10, 10, 500, 500], "label": "circle"}]\n```'
        with FakeChatServer(lambda body, attempt: answer) as server:
            stage = Detector(DetectConfig(backend="vlm"),
                                VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url=server.base_url,
                                                                                  model="fake", concurrency=8)))
            stage.setup()
            secs, _ = timed(lambda: stage.process(items), args.repeats)
            stage.teardown()
        row("detect", "openai*", secs, 8, "-", "http", None)

    dets = detections_for(items, 6, ["circle", "square", "triangle"])
    seg_cfgs: list[tuple[str, SegmentConfig]] = []
    common = dict(score_threshold=0.0, min_area=1)
    if not only or "sam3" in only:
        path = tiny_models.build_sam3(work / "sam3", full_size=full, device=device, dtype=dtype)
        seg_cfgs.append(("sam3", SegmentConfig(backend="sam3", sam3=ModelRef(model=str(path), device=device,
                                                                              dtype=dtype, batch_size=batch),
                                               **common)))
    if not only or "sam2" in only:
        ck = tiny_models.build_sam2_checkpoint(work / "sam2", full_size=full)
        seg_cfgs.append(("sam2", SegmentConfig(backend="sam2", sam2=ModelRef(model=str(ck.path), device=device,
                                                                              dtype=dtype, batch_size=batch),
                                               sam2_config=ck.config, sam2_overrides=ck.overrides, **common)))
    if not only or "sam2_hf" in only:
        path = tiny_models.build_sam2_hf(work / "sam2_hf", full_size=full, device=device, dtype=dtype)
        seg_cfgs.append(("sam2_hf", SegmentConfig(backend="sam2_hf", sam2_hf=ModelRef(
            model=str(path), device=device, dtype=dtype, batch_size=batch), **common)))
    for name, cfg in seg_cfgs:
        stage = Segmenter(cfg)
        stage.setup()
        secs, result = timed(lambda: stage.process(items, dets), args.repeats)  # noqa: B023
        stage.teardown()
        share = result.timings["encode_s"] / result.timings["total_s"]
        row("segment", name, secs, batch, dtype, device, share)
        print(f"{'':8} {'':9} instances {result.counts['instances']}, raw masks {result.counts['raw']}, "
              f"encode {1000 * result.timings['encode_s']:.1f} ms of {1000 * result.timings['total_s']:.1f} ms")
    print("* openai: an in-process fake server on 127.0.0.1 — client, encoding and parsing overhead only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
