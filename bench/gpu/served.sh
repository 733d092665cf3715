#!/usr/bin/env bash
# Issue 31 on a GPU host: in-process transformers vs served vLLM on the same images and model shape, and
# SAM3 ms/image at full size. Prints the tables bench/RESULTS.md ("Served VLM (issue 31)") asks for.
#
#   PY=.venv/bin/python VLLM=vllm bash bench/gpu/served.sh            # from the repository root
#
# Needs: CUDA, the project's environment (PY: torch, transformers, openai) and vLLM's `vllm` command
# (`pip install vllm==0.33.0` in its own environment). Nothing is downloaded: the Qwen3-VL-8B-shaped
# model is built here with random weights (tests/support/tiny_models.py, full_size=True) and vLLM serves
# that folder. Random weights rarely stop early, so both sides generate up to MAX_NEW tokens per image.
# vLLM is started on 127.0.0.1, waited for on /health, and stopped by its pid at the end.
set -euo pipefail
PY=${PY:-.venv/bin/python}
VLLM=${VLLM:-vllm}
IMAGES=${IMAGES:-64}
MAX_NEW=${MAX_NEW:-64}
PORT=${PORT:-8011}
WORK=bench/_work/full
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA here'; print(torch.cuda.get_device_name(0))"
"$PY" -c "from tests.support import tiny_models as t; t.build_qwen3vl('$WORK/qwen3vl', full_size=True, device='cuda', dtype='bfloat16')"

"$VLLM" serve "$WORK/qwen3vl" --served-model-name qwen3vl-bench --host 127.0.0.1 --port "$PORT" \
  --dtype bfloat16 --max-model-len 8192 --limit-mm-per-prompt '{"image": 1, "video": 0}' \
  > "$WORK/vllm.log" 2>&1 &
VLLM_PID=$!
trap 'kill "$VLLM_PID" 2>/dev/null; wait "$VLLM_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  if "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null; then break; fi
  kill -0 "$VLLM_PID" 2>/dev/null || { tail -40 "$WORK/vllm.log"; exit 1; }
  sleep 2
done

echo "== detect: served vLLM (concurrency 1, 4, 16, 64) and in-process transformers (batch 8), same images"
"$PY" bench/served.py --served "http://127.0.0.1:$PORT/v1" --model qwen3vl-bench --concurrency 1,4,16,64 \
  --images "$IMAGES" --max-new-tokens "$MAX_NEW" --in-process "$WORK/qwen3vl"
kill "$VLLM_PID"; wait "$VLLM_PID" 2>/dev/null || true; trap - EXIT

echo "== segment: SAM3 full size (bf16, post-processing in float32), ms/image; target <= 15 ms/image"
"$PY" bench/perception.py --full-size --only sam3 --images "$IMAGES"
echo "== SAM3 bf16 vs fp32 on CUDA (the issue 31 defect)"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/unit/segment/test_sam3_bf16.py
