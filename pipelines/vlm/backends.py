"""VLM backends implementing :class:`pipelines.vlm.VLMBackend`.

* :class:`Qwen3VLBackend` — transformers ``Qwen3VLForConditionalGeneration`` + the official
  ``AutoProcessor``, in-process; batched with left padding; bf16 on CUDA (float32 on CPU) unless
  the :class:`~pipelines.config.ModelRef` says otherwise; the model is loaded once in ``setup()``.
* :class:`OpenAIBackend` — an OpenAI-compatible ``/v1/chat/completions`` endpoint (how vLLM and
  SGLang serve large Qwen3-VL checkpoints), images sent inline as base64 ``data:`` URLs, with a
  per-request timeout, bounded retries with backoff on connection errors, 408, 409, 429 and 5xx,
  ``Retry-After`` honoured (a 429 pauses every request: :class:`BackPressure`) and at most
  ``concurrency`` requests in flight. A request that still fails is a :class:`~pipelines.vlm.VLMFailure`
  in its place (``generate`` raises :class:`~pipelines.vlm.VLMBatchError` with every outcome): the
  caller writes a reject row for it and keeps the other answers.

Both return, for each request, ``num_samples`` completions in request order.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipelines.config import ModelRef, OpenAIEndpoint, VLMConfig
from pipelines.vlm import Outcome, VLMBackend, VLMBatchError, VLMFailure, VLMRequest
from pipelines.vlm import VLMRequestError as VLMRequestError  # re-exported: callers catch it from here

log = logging.getLogger(__name__)


# -- where a configured model is, without downloading ---------------------------------------------
ALLOW_DOWNLOADS_ENV = "HOPCHAIN_ALLOW_DOWNLOADS"


def downloads_allowed() -> bool:
    """Model hub downloads are off unless ``HOPCHAIN_ALLOW_DOWNLOADS=1`` (``true``/``yes``)."""
    return os.environ.get(ALLOW_DOWNLOADS_ENV, "").strip().lower() in ("1", "true", "yes")


class ModelUnavailable(RuntimeError):
    """A configured model that cannot be loaded here: ``why`` and what to do (``fix``)."""

    def __init__(self, what: str, why: str, fix: str):
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.fix = what, why, fix


class ModelLocation:
    """Where :func:`locate_model` found a model: ``kind`` is ``path`` (a local folder or file),
    ``cache`` (the local Hugging Face cache) or ``download`` (not here; downloads are allowed)."""

    def __init__(self, model: str, kind: str, path: Path | None):
        self.model, self.kind, self.path = model, kind, path

    def describe(self) -> str:
        if self.kind == "path":
            return f"local path {self.path}"
        if self.kind == "cache":
            return f"{self.model} in the local Hugging Face cache ({self.path})"
        return f"{self.model} is not cached; it will be downloaded ({ALLOW_DOWNLOADS_ENV}=1)"


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") != 1 or Path(model).exists()


def locate_model(model: str, *, key: str = "model", single_file: bool = False) -> ModelLocation:
    """Find ``model`` (a local path or a hub id) without any network call.

    A path must exist (a file when ``single_file``, e.g. a sam2 checkpoint); a hub id must be in the
    local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) unless downloads are allowed. Raises
    :class:`ModelUnavailable` naming the params key and the ways to make the model available.
    """
    what = f"{key} {model!r}" if key else repr(model)
    if not model:
        raise ModelUnavailable(what, "empty", f"set {key} in params.yaml to a local path or a model id")
    if _looks_like_path(model):
        path = Path(model).expanduser()
        if single_file and path.is_file() or not single_file and path.is_dir() and any(path.iterdir()):
            return ModelLocation(model, "path", path.resolve())
        kind = "checkpoint file" if single_file else "checkpoint folder"
        why = f"no such {kind}" if not path.exists() else f"not a {kind}"
        raise ModelUnavailable(what, why, f"copy the checkpoint to {path} or set {key} in params.yaml to where it is")
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # HFValidationError: not a valid hub id either
        raise ModelUnavailable(what, "no such local path, and not a model id",
                               f"set {key} in params.yaml to a checkpoint path or a hub id") from None
    if isinstance(cached, str):
        return ModelLocation(model, "cache", Path(cached).parent)
    if downloads_allowed():
        return ModelLocation(model, "download", None)
    raise ModelUnavailable(
        what, f"not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and downloads are off",
        f"set {key} in params.yaml to a local checkpoint folder, point HF_HOME at a cache that holds it "
        f"filled by `hf download {model}` on a connected machine, or set {ALLOW_DOWNLOADS_ENV}=1",
    )


def pretrained_kwargs() -> dict[str, Any]:
    """Keyword arguments for every ``from_pretrained``: local files only unless downloads are allowed."""
    return {} if downloads_allowed() else {"local_files_only": True}


def load_pretrained(loader: Any, model: str, key: str, **kw: Any) -> Any:
    """``loader.from_pretrained(model, ...)`` offline (unless allowed); a checkpoint that cannot be
    loaded is one :class:`ModelUnavailable` naming ``key``, not a transformers traceback."""
    locate_model(model, key=key)
    try:
        return loader.from_pretrained(model, **pretrained_kwargs(), **kw)
    except (OSError, ValueError) as err:
        why = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ModelUnavailable(f"{key} {model!r}", f"cannot be loaded: {why}",
                               "check that the folder holds a complete checkpoint of this model class") from err


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bfloat16 on CUDA, float32 elsewhere; otherwise the named torch dtype."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


def _messages(request: VLMRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    image = [{"type": "image"}] if request.image is not None else []
    messages.append({"role": "user", "content": [*image, {"type": "text", "text": request.prompt}]})
    return messages


class Qwen3VLBackend:
    """In-process Qwen3-VL. ``Qwen3VLBackend(ModelRef(model=path_or_id, device="cpu"))``.

    ``ref.batch_size`` requests go through one ``generate`` call (left padding); ``ref.model`` is
    a local folder or a hub id already in the local cache (nothing is downloaded in tests/CI).
    """

    def __init__(self, ref: ModelRef):
        if not ref.model:
            raise ValueError("Qwen3VLBackend needs ModelRef.model (a local path or model id)")
        self.ref = ref
        self.name = f"qwen3vl:{ref.model}"
        self.requests_per_call = ref.batch_size
        self.model: Any = None
        self.processor: Any = None
        self.device = ""

    def setup(self) -> None:
        if self.model is not None:
            return
        locate_model(self.ref.model, key="vlm.qwen3vl.model")  # fails in a second, before importing transformers
        from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

        self.device = resolve_device(self.ref.device)
        dtype = resolve_dtype(self.ref.dtype, self.device)
        self.processor = load_pretrained(AutoProcessor, self.ref.model, "vlm.qwen3vl.model")
        self.processor.tokenizer.padding_side = "left"
        self.model = load_pretrained(Qwen3VLForConditionalGeneration, self.ref.model, "vlm.qwen3vl.model",
                                     dtype=dtype)
        self.model.to(self.device).eval()
        log.info("loaded %s on %s (%s)", self.ref.model, self.device, dtype)

    def teardown(self) -> None:
        self.model = None
        self.processor = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def generate(
        self,
        requests: list[VLMRequest],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        num_samples: int = 1,
    ) -> list[list[str]]:
        if self.model is None:
            raise RuntimeError("Qwen3VLBackend.setup() was not called")
        out: list[list[str]] = []
        for start in range(0, len(requests), self.ref.batch_size):
            out.extend(self._generate_batch(requests[start : start + self.ref.batch_size],
                                            max_new_tokens, temperature, num_samples))
        return out

    def _generate_batch(
        self, batch: Sequence[VLMRequest], max_new_tokens: int, temperature: float, num_samples: int
    ) -> list[list[str]]:
        import torch

        texts = [
            self.processor.apply_chat_template(_messages(r), tokenize=False, add_generation_prompt=True)
            for r in batch
        ]
        images = [r.image.convert("RGB") for r in batch if r.image is not None]
        if images and len(images) != len(batch):
            raise ValueError("a batch mixes requests with and without an image")
        inputs = self.processor(
            text=texts, images=images or None, padding=True, return_tensors="pt"
        ).to(self.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, num_return_sequences=num_samples, **sampling
            )
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [decoded[i * num_samples : (i + 1) * num_samples] for i in range(len(batch))]


def encode_image_data_url(image: Any, fmt: str = "JPEG", quality: int = 95) -> str:
    """An RGB PIL image → ``data:image/jpeg;base64,...`` (PNG when ``fmt="PNG"``)."""
    buf = io.BytesIO()
    if fmt.upper() == "PNG":
        image.convert("RGB").save(buf, "PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buf, "JPEG", quality=quality)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


#: HTTP statuses worth another attempt: request timeout, conflict, too many requests, server errors
RETRYABLE_STATUS = frozenset({408, 409, 429})


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds a response asks the client to wait: ``retry-after-ms``, else ``Retry-After`` as seconds
    or as an HTTP date; ``None`` when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BackPressure:
    """A gate every worker passes before sending: when the server says "too many requests, retry
    after N s", no request of this backend is sent for N s, not just the one that was refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0

    def hold(self, seconds: float) -> None:
        """No request leaves before ``seconds`` from now (a later hold already set is kept)."""
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._not_before - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint with image input (see the module docstring).

    At most ``endpoint.concurrency`` requests are in flight (a thread pool of that size; a request
    waiting out a backoff keeps its slot, so retries never raise the load). Each request gets
    ``max_retries`` more attempts on connection errors, timeouts, 408/409/429 and 5xx, with exponential
    backoff or the server's ``Retry-After``; a 429's wait holds every request (:class:`BackPressure`).
    Results come back in request order. A request that still fails is a :class:`VLMFailure` in its
    place, and ``generate`` raises :class:`VLMBatchError` carrying every outcome
    (:func:`pipelines.vlm.generate_outcomes` unpacks it, so callers write reject rows).

    The API key comes from ``HOPCHAIN_VLM_API_KEY`` (or ``OPENAI_API_KEY``), never from params;
    local vLLM/SGLang servers usually accept any key.
    """

    def __init__(self, endpoint: OpenAIEndpoint, *, api_key: str | None = None, image_format: str = "JPEG"):
        if not endpoint.base_url or not endpoint.model:
            raise ValueError("OpenAIBackend needs vlm.openai.base_url and vlm.openai.model")
        self.endpoint = endpoint
        self.name = f"openai:{endpoint.model}"
        self.requests_per_call = endpoint.requests_per_call
        self._api_key = api_key
        self._image_format = image_format
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._gate = BackPressure()
        self._jitter = random.Random(0)  # spreads retries; never touches what is generated

    def setup(self) -> None:
        if self._client is not None:
            return
        from openai import OpenAI

        key = self._api_key or os.environ.get("HOPCHAIN_VLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        # retries are ours (shared back-pressure, bounded backoff), so the client's own are off
        self._client = OpenAI(base_url=self.endpoint.base_url, api_key=key, timeout=self.endpoint.timeout_s,
                              max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=self.endpoint.concurrency, thread_name_prefix="vlm")

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _body(self, request: VLMRequest, max_new_tokens: int, temperature: float, num_samples: int
              ) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        if request.image is not None:
            url = encode_image_data_url(request.image, self._image_format)
            content.insert(0, {"type": "image_url", "image_url": {"url": url}})
        messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": messages, "max_tokens": max_new_tokens,
                                "temperature": temperature, "n": num_samples}
        if self.endpoint.seed is not None:
            body["seed"] = self.endpoint.seed
        return body

    def _backoff(self, attempt: int) -> float:
        base = min(self.endpoint.retry_backoff_max_s, self.endpoint.retry_backoff_s * 2.0 ** attempt)
        return base * (0.75 + 0.25 * self._jitter.random())

    def _one(self, request: VLMRequest, max_new_tokens: int, temperature: float, num_samples: int) -> Outcome:
        """One request with its retries; never raises for a failed request (a :class:`VLMFailure`)."""
        import openai

        body = self._body(request, max_new_tokens, temperature, num_samples)
        attempts = self.endpoint.max_retries + 1
        why = ""
        for attempt in range(attempts):
            self._gate.wait()
            try:
                resp = self._client.chat.completions.create(**body)
            except openai.APIStatusError as err:
                why = f"HTTP {err.status_code}: {_one_line(err.message)}"
                if err.status_code not in RETRYABLE_STATUS and err.status_code < 500:
                    return VLMFailure(f"{self.name}: {why}")
                asked = retry_after_s(err.response.headers)
                wait = min(asked, self.endpoint.max_retry_after_s) if asked is not None else self._backoff(attempt)
                if err.status_code == 429:
                    self._gate.hold(wait)  # the server is full: nobody sends until it said
                    wait = 0.0
            except openai.APIConnectionError as err:  # refused, dropped, timed out (APITimeoutError)
                why = f"{type(err).__name__}: {_one_line(str(err))}"
                wait = self._backoff(attempt)
            except openai.OpenAIError as err:  # a malformed response: another attempt will not help
                return VLMFailure(f"{self.name}: {type(err).__name__}: {_one_line(str(err))}")
            else:
                texts = [c.message.content or "" for c in sorted(resp.choices, key=lambda c: c.index)]
                if len(texts) != num_samples:
                    return VLMFailure(f"{self.name}: asked for {num_samples} samples, got {len(texts)}")
                return texts
            if attempt + 1 < attempts:
                log.info("%s: attempt %d/%d failed (%s); retrying in %.2f s", self.name, attempt + 1, attempts,
                         why, wait)
                time.sleep(wait)
        return VLMFailure(f"{self.name}: failed after {attempts} attempts: {why}")

    def generate(
        self,
        requests: list[VLMRequest],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        num_samples: int = 1,
    ) -> list[list[str]]:
        if self._pool is None:
            raise RuntimeError("OpenAIBackend.setup() was not called")
        futures = [self._pool.submit(self._one, r, max_new_tokens, temperature, num_samples) for r in requests]
        outcomes = [f.result() for f in futures]
        if any(isinstance(o, VLMFailure) for o in outcomes):
            raise VLMBatchError(self.name, outcomes)
        return [o for o in outcomes if not isinstance(o, VLMFailure)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def make_vlm_backend(config: VLMConfig) -> VLMBackend:
    """The backend named by ``config.backend`` (``qwen3vl`` or ``openai``)."""
    if config.backend == "qwen3vl":
        return Qwen3VLBackend(config.qwen3vl)
    if config.backend == "openai":
        return OpenAIBackend(config.openai)
    raise ValueError("vlm.backend is 'none': this configuration has no vision-language model")
