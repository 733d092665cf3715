"""Served VLM throughput: detect's images/s through the OpenAI-compatible backend at concurrency 1, 4, 16.

    OMP_NUM_THREADS=1 .venv/bin/python bench/served.py [--images 64] [--size 640x480] [--latency-ms 200]
    .venv/bin/python bench/served.py --served http://127.0.0.1:8000/v1 --model qwen3vl-bench \\
        [--in-process bench/_work/full/qwen3vl] [--max-new-tokens 64]      # on a GPU: bench/gpu/served.sh

Without ``--served``: the in-process fake server (tests/support/fake_openai.py) answers every request after a
fixed latency, so the figures are what the client's concurrency buys (ideal ratio = concurrency) and its own
overhead (encoding, HTTP, parsing), not a model's speed. With ``--served``: the same images and prompt through
a real server; ``--in-process`` adds the in-process transformers row on the same images and model folder.
Every row runs the platform's detect step (:class:`pipelines.detect.stage.Detector`) end to end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)
from perception import scene_images  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ANSWER = '```json\n[{"bbox_2d": [10, 10, 500, 500], "label": "circle"}]\n```'


def detect_rate(vlm: Any, items: list, max_new_tokens: int) -> tuple[float, dict]:
    """(seconds, counts) of one detect pass over ``items``, in the batches the detect stage uses."""
    from pipelines.config import DetectConfig, Params
    from pipelines.detect.stage import Detector, batch_size, batches, sum_counts

    detector = Detector(DetectConfig(backend="vlm", max_new_tokens=max_new_tokens), vlm)
    detector.setup()
    try:
        size = batch_size(Params(vlm=vlm), "detect")
        started = time.perf_counter()
        parts = [detector.process(chunk) for chunk in batches(items, size)]
        return time.perf_counter() - started, sum_counts([p.counts for p in parts])
    finally:
        detector.teardown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="the fake server's latency per request")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--served", default="", help="base URL of a real OpenAI-compatible server (…/v1)")
    parser.add_argument("--model", default="", help="the served model id (with --served)")
    parser.add_argument("--in-process", default="", help="a Qwen3-VL folder: add the in-process transformers row")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    from pipelines.config import ModelRef, OpenAIEndpoint, VLMConfig
    from tests.support.fake_openai import FakeChatServer

    width, height = (int(v) for v in args.size.lower().split("x"))
    items = scene_images(args.images, width, height)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"machine: {cpu_model()} ({os.cpu_count()} cores); images: {args.images} x {width}x{height}; "
          f"max_new_tokens {args.max_new_tokens}")
    header = f"{'backend':28} {'concurrency':>11} {'in flight':>9} {'img/s':>8} {'ms/img':>8} {'vs c=1':>7}  rejected"
    print(header)
    print("-" * len(header))
    base: float | None = None

    def row(name: str, level: int | str, in_flight: int | str, secs: float, counts: dict) -> None:
        nonlocal base
        ips = len(items) / secs
        if level == 1:
            base = ips
        ratio = f"{ips / base:6.2f}x" if base and isinstance(level, int) else "      -"
        print(f"{name:28} {level!s:>11} {in_flight!s:>9} {ips:8.2f} {1000 / ips:8.1f} {ratio}  "
              f"{int(counts.get('rejected', 0))}")

    with FakeChatServer(lambda body, attempt: ANSWER) as warm:  # imports and first-call costs out of row 1
        detect_rate(VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url=warm.base_url, model="fake")),
                    items[:2], args.max_new_tokens)
    for level in levels:
        if args.served:
            vlm = VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url=args.served, model=args.model,
                                                                    concurrency=level, timeout_s=600))
            secs, counts = detect_rate(vlm, items, args.max_new_tokens)
            row(f"served {args.model}", level, "-", secs, counts)
            continue
        with FakeChatServer(lambda body, attempt: ANSWER, delay_s=args.latency_ms / 1000) as server:
            vlm = VLMConfig(backend="openai", openai=OpenAIEndpoint(base_url=server.base_url, model="fake",
                                                                    concurrency=level))
            secs, counts = detect_rate(vlm, items, args.max_new_tokens)
            row(f"fake server, {args.latency_ms:g} ms/request", level, server.max_in_flight, secs, counts)
    if args.in_process:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "bfloat16" if device == "cuda" else "float32"
        batch = 8 if device == "cuda" else 2
        vlm = VLMConfig(backend="qwen3vl", qwen3vl=ModelRef(model=args.in_process, device=device, dtype=dtype,
                                                            batch_size=batch))
        secs, counts = detect_rate(vlm, items, args.max_new_tokens)
        row(f"in-process {device} {dtype} b{batch}", "-", "-", secs, counts)
    if not args.served:
        print("fake server: fixed latency, no model; the ratio shows what concurrency buys the client "
              "(ideal = concurrency), 'in flight' is the server's own count of requests at once.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
