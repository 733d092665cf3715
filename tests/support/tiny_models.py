"""Real model architectures with random weights, built offline from configs.

Each ``build_*`` function writes a folder (or checkpoint) that the production code loads exactly
as it loads a real checkpoint (``from_pretrained`` / ``build_sam2(..., ckpt_path)``), with the
official processors, so tests exercise the real code paths without downloading anything.

* ``full_size=False`` (default): a few hundred thousand parameters, CPU-fast (tests).
* ``full_size=True``: the production architecture (Qwen3-VL-8B, SAM3, SAM2.1 hiera) with random
  weights, built directly on ``device`` in ``dtype`` — the real compute cost, for GPU benches.

No Qwen/CLIP vocabulary exists offline, so tiny byte-level BPE tokenizers are trained here with
the same pre-tokenizers (``tokenizers``) and wrapped in the official tokenizer classes; the
Qwen3-VL image/video token ids in the model config are taken from that tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CORPUS = [
    'Locate every object in the image and output its bbox_2d and label in JSON format.',
    '```json\n[{"bbox_2d": [12, 40, 500, 990], "label": "cat"}, {"bbox_2d": [0, 0, 1000, 1000], "label": "dog"}]\n```',
    "person car bottle chair cup red circle blue square green triangle apple banana table",
    "How many objects are left of the largest circle? Answer with a number: 0 1 2 3 4 5 6 7 8 9",
]

# Qwen3-VL chat format: enough of the official template for image + text user turns.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
QWEN_SPECIAL_TOKENS = [
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]

# sam2 package: shrink the hiera-t trunk (input size stays 1024, which the predictor requires).
SAM2_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SAM2_TINY_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.memory_attention.num_layers=1",
]
SAM2_FULL_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"


def _torch_setup(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def train_qwen_tokenizer(vocab_size: int = 600) -> Any:
    """A byte-level BPE with Qwen2's pre-tokenizer, wrapped as ``Qwen2Tokenizer`` with Qwen's
    special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, additional_special_tokens=QWEN_SPECIAL_TOKENS)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def train_clip_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE with CLIP's normaliser/pre-tokenizer, wrapped as ``CLIPTokenizer``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    for ch in alphabet:  # every single byte can also end a word
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in model["merges"]])


def _done(out: Path) -> bool:
    return (out / ".tiny-model-complete").exists()


def _mark_done(out: Path, meta: dict[str, Any]) -> None:
    (out / ".tiny-model-complete").write_text(json.dumps(meta, sort_keys=True))


def build_qwen3vl(
    out_dir: str | Path, *, full_size: bool = False, seed: int = 0, device: str = "cpu", dtype: str = "float32"
) -> Path:
    """Qwen3-VL (``Qwen3VLForConditionalGeneration`` + ``Qwen3VLProcessor``) → ``out_dir``.

    Tiny: text 2 layers, hidden 64, 4 heads / 2 KV heads, head_dim 16, mrope [4, 2, 2]; vision
    2 layers, hidden 32, patch 16; images resized to 4k..64k pixels. Full size: Qwen3-VL-8B shapes.
    Loadable with ``AutoProcessor.from_pretrained`` / ``Qwen3VLForConditionalGeneration.from_pretrained``.
    """
    out = Path(out_dir)
    if _done(out):
        return out
    torch = _torch_setup(seed)
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = train_qwen_tokenizer()
    ids = dict(zip(QWEN_SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS), strict=True))
    if full_size:
        text = dict(
            vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                             "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        )
        vision = dict(
            depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
            num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
        )
        size = {"shortest_edge": 65536, "longest_edge": 16777216}
    else:
        text = dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        )
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            num_position_embeddings=256, deepstack_visual_indexes=[0],
        )
        size = {"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 64}
    text["pad_token_id"] = tokenizer.pad_token_id
    vision.update(patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=_dtype(dtype)).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _mark_done(out, {"kind": "qwen3vl", "full_size": full_size, "seed": seed})
    return out


def build_sam3(
    out_dir: str | Path, *, full_size: bool = False, seed: int = 0, device: str = "cpu", dtype: str = "float32"
) -> Path:
    """SAM3 (``Sam3Model`` + ``Sam3Processor`` with a CLIP tokenizer) → ``out_dir``.

    Tiny: input 224, ViT hidden 32 / 2 layers (patch 14), 10 queries, CLIP text hidden 32.
    Full size: the ``Sam3Config()`` defaults (input 1008, 200 queries)."""
    out = Path(out_dir)
    if _done(out):
        return out
    torch = _torch_setup(seed)
    from transformers import Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    tokenizer = train_clip_tokenizer()
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if full_size:
        # Sam3Config's own text defaults (CLIP-L-sized), restated because passing any text_config dict
        # replaces them with CLIPTextConfig's smaller defaults
        config = Sam3Config(text_config={
            "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096,
            "projection_dim": 512, "num_hidden_layers": 24, "num_attention_heads": 16,
            "max_position_embeddings": 32, "hidden_act": "gelu", **special,
        })
        image_processor = Sam3ImageProcessor()
    else:
        config = Sam3Config(
            vision_config=dict(
                backbone_config=dict(
                    model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=224, patch_size=14, window_size=8, global_attn_indexes=[1],
                    pretrain_image_size=224,
                ),
                fpn_hidden_size=32,
                backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]],
            ),
            text_config=dict(
                model_type="clip_text_model", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                projection_dim=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32, **special,
            ),
            geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
            detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
            detr_decoder_config=dict(
                hidden_size=32, num_layers=1, num_queries=10, num_attention_heads=2, intermediate_size=64
            ),
            mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
        )
        image_processor = Sam3ImageProcessor(size={"height": 224, "width": 224}, mask_size={"height": 64, "width": 64})
    with torch.device(device):
        model = Sam3Model._from_config(config, dtype=_dtype(dtype)).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    _mark_done(out, {"kind": "sam3", "full_size": full_size, "seed": seed})
    return out


def build_sam2_hf(
    out_dir: str | Path, *, full_size: bool = False, seed: int = 0, device: str = "cpu", dtype: str = "float32"
) -> Path:
    """SAM2 in transformers (``Sam2Model`` + ``Sam2Processor``) → ``out_dir``.

    Tiny: input 128, Hiera blocks [1, 1, 2, 1], widths [12, 24, 48, 96]. Full size: the
    ``Sam2Config()`` defaults (sam2.1 hiera-tiny shapes, input 1024)."""
    out = Path(out_dir)
    if _done(out):
        return out
    torch = _torch_setup(seed)
    from transformers import Sam2Config, Sam2Model, Sam2Processor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

    if full_size:
        config = Sam2Config()
        image_processor = Sam2ImageProcessor()
    else:
        config = Sam2Config(
            vision_config=dict(
                backbone_config=dict(
                    model_type="sam2_hiera_det_model", hidden_size=12, image_size=[128, 128],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[12, 24, 48, 96],
                    num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 4, 2],
                    global_attention_blocks=[3],
                ),
                backbone_channel_list=[96, 48, 24, 12],
                backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
                fpn_hidden_size=32,
            ),
            prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16),
            mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        )
        image_processor = Sam2ImageProcessor(size={"height": 128, "width": 128}, mask_size={"height": 32, "width": 32})
    with torch.device(device):
        model = Sam2Model._from_config(config, dtype=_dtype(dtype)).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    Sam2Processor(image_processor=image_processor).save_pretrained(out)
    _mark_done(out, {"kind": "sam2_hf", "full_size": full_size, "seed": seed})
    return out


@dataclass(frozen=True)
class Sam2Checkpoint:
    """A sam2-package checkpoint: ``build_sam2(config, ckpt_path=path, hydra_overrides_extra=overrides)``."""

    path: Path
    config: str
    overrides: list[str] = field(default_factory=list)


def build_sam2_checkpoint(out_dir: str | Path, *, full_size: bool = False, seed: int = 0) -> Sam2Checkpoint:
    """A ``{"model": state_dict}`` checkpoint for the sam2 package (``out_dir/sam2.pt``).

    Tiny: hiera-t with an 8-wide trunk (input 1024, as the predictor requires). Full size:
    sam2.1 hiera-large (what the ``gpu`` profile names)."""
    out = Path(out_dir)
    config = SAM2_FULL_CONFIG if full_size else SAM2_TINY_CONFIG
    overrides = [] if full_size else list(SAM2_TINY_OVERRIDES)
    path = out / "sam2.pt"
    if not _done(out):
        torch = _torch_setup(seed)
        from sam2.build_sam import build_sam2

        model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "sam2.pt.tmp"
        torch.save({"model": model.state_dict()}, tmp)
        tmp.replace(path)
        _mark_done(out, {"kind": "sam2", "full_size": full_size, "seed": seed, "config": config})
    return Sam2Checkpoint(path=path, config=config, overrides=overrides)
