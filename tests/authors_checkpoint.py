"""A tiny checkpoint folder in the authors' released format, and their inference by the equations.

:func:`write_authors_folder` writes what the authors' ``CxrAlignModel.save_pretrained`` writes
(docs/reproduce.md): config.json with vision / text / align configs and the loss options,
model.safetensors in bfloat16 under their names (transformers 4.x DINOv2 attention names), the
MPNet tokenizer's files and a BlipImageProcessor config; every tensor random, layer norms and
layer scales included, so a swapped or dropped tensor changes the numbers.

:func:`expected_outputs` computes logits and maps straight from that folder's tensors with the
equations of docs/method.md (a ViT, MPNet and VL-CABS written out here), never through the
project's model code or transformers' modules.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import load_file, save_file

WIDTH, HEADS, PATCH = 32, 2, 4
PRETRAIN_SIZE, INPUT_SIZE = 16, 28  # a 4x4 position grid run at 7x7, as 16x16 runs at 37x37
VISION_LAYERS, ALIGN_LAYERS, TEXT_LAYERS = 2, 2, 2
TEXT_POSITIONS = 40
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.3, 0.35)
LOG_TAU = math.log(0.05)
WORDS = [
    *("there", "is", "no", "a", "an", "left", "right", "small", "large", "pleural", "effusion"),
    *("pneumothorax", "cardiomegaly", "edema", "opacity", "nodule", "in", "the", "lung"),
    *("base", "apex", "upper", "lower", "lobe"),
]
VOCAB = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>", *WORDS, "##s", "##es"]


@dataclass(frozen=True)
class Sizes:
    """The sizes of a checkpoint in the authors' format (the equations below need TINY)."""

    width: int = WIDTH
    heads: int = HEADS
    patch: int = PATCH
    pretrain_size: int = PRETRAIN_SIZE
    input_size: int = INPUT_SIZE
    vision_layers: int = VISION_LAYERS
    align_layers: int = ALIGN_LAYERS
    text_layers: int = TEXT_LAYERS
    text_positions: int = TEXT_POSITIONS
    vocab_size: int = len(VOCAB)
    text_intermediate: int = 2 * WIDTH


TINY = Sizes()
# The released model's sizes (docs/reproduce.md): DINOv2-base at 518 px, MPNet-base, 2 layers.
PAPER = Sizes(768, 12, 14, 224, 518, 12, 2, 12, 514, 30527, 3072)
# transformers 5 DINOv2 attention names -> 4.x names (the release's)
_TO_4X = {
    ".attention.q_proj.": ".attention.attention.query.",
    ".attention.k_proj.": ".attention.attention.key.",
    ".attention.v_proj.": ".attention.attention.value.",
    ".attention.o_proj.": ".attention.output.dense.",
}


def _randomised(state: dict[str, torch.Tensor], generator: torch.Generator) -> dict:
    out = {}
    for name, value in state.items():
        noise = torch.randn(value.shape, generator=generator)
        if name.endswith(("norm1.weight", "norm2.weight", "LayerNorm.weight", "layernorm.weight")):
            out[name] = 1 + 0.2 * noise
        elif "lambda1" in name:
            out[name] = 0.5 + 0.3 * noise
        else:
            out[name] = 0.3 * noise
    return out


def _as_4x(name: str) -> str:
    for new, old in _TO_4X.items():
        name = name.replace(new, old)
    return name


def write_authors_folder(
    folder: Path, seed: int = 0, names: str = "4.x", sizes: Sizes = TINY
) -> Path:
    """Write an authors'-format checkpoint of ``sizes`` (default tiny) into ``folder``;
    ``names`` "5.x" keeps transformers 5's DINOv2 attention names (a folder saved under
    transformers 5)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    rename = _as_4x if names == "4.x" else (lambda name: name)
    vision_config = transformers.Dinov2Config(
        hidden_size=sizes.width,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.heads,
        mlp_ratio=4,
        patch_size=sizes.patch,
        image_size=sizes.pretrain_size,
    )
    align_config = transformers.Dinov2Config(
        hidden_size=sizes.width,
        num_hidden_layers=sizes.align_layers,
        num_attention_heads=sizes.heads,
    )
    tensors: dict[str, torch.Tensor] = {}
    vision = _randomised(transformers.Dinov2Model(vision_config).state_dict(), generator)
    tensors |= {f"vision_model.{rename(k)}": v for k, v in vision.items()}
    text_config = transformers.MPNetConfig(
        vocab_size=sizes.vocab_size,
        hidden_size=sizes.width,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.heads,
        intermediate_size=sizes.text_intermediate,
        max_position_embeddings=sizes.text_positions,
    )
    text = _randomised(transformers.MPNetModel(text_config).state_dict(), generator)
    tensors |= {f"text_model.{k}": v for k, v in text.items()}
    block = transformers.Dinov2Model(align_config).encoder.layer
    for layer, state in enumerate(_randomised(b.state_dict(), generator) for b in block):
        prefix = f"align_transformer.transformer_layers.layer.{layer}."
        tensors |= {prefix + rename("." + k)[1:]: v for k, v in state.items()}
    tensors["loss_fns.RadZeroLoss.loss_temperature"] = torch.tensor([LOG_TAU])
    tensors["loss_fns.RadZeroLoss.layer_norm.weight"] = 1 + 0.2 * torch.randn(
        sizes.width, generator=generator
    )
    tensors["loss_fns.RadZeroLoss.layer_norm.bias"] = 0.2 * torch.randn(
        sizes.width, generator=generator
    )
    save_file(
        {k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()},
        folder / "model.safetensors",
    )

    loss = {
        "apply": ["RadZeroLoss"],
        "RadZeroLoss": {
            "sim_op": "cos",
            "loss_temperature": 0.07,
            "attn_temperature": None,
            "hidden_dim": sizes.width,
            "text_features_l2_norm": False,
            "multi_positive": True,
        },
    }
    module_to_update = ["align_transformer", "text_model", "loss_fns"]
    vision_dump = vision_config.to_dict() | {
        "img_size": sizes.input_size,
        "pretrained_name_or_path": "StanfordAIMI/dinov2-base-xray-224",
        "model_type": "",
    }
    config = {
        "architectures": ["CxrAlignModel"],
        "vision_config": vision_dump,
        "text_config": {
            "pretrained_name_or_path": "sentence-transformers/all-mpnet-base-v2",
            "pretrained_tokenizer_name_or_path": "sentence-transformers/all-mpnet-base-v2",
            "use_text_projection": False,
            "use_cls_token": False,
            "model_type": "",
        },
        "align_transformer_config": align_config.to_dict()
        | {"use_layer_norm": False, "projector_config": None, "model_type": ""},
        "compute_logits_type": "radzero",
        "loss": loss,
        "module_to_update": module_to_update,
        "kwargs": {
            "loss": loss,
            "compute_logits_type": "radzero",
            "module_to_update": module_to_update,
        },
        "pretrained_dir": None,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.39.3",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    vocab = VOCAB + [f"word{i}" for i in range(sizes.vocab_size - len(VOCAB))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.MPNetTokenizer(vocab=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    special = {
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": "<mask>",
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "unk_token": "[UNK]",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    processor = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(MEAN),
        "image_processor_type": "BlipImageProcessor",
        "image_std": list(STD),
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": sizes.input_size, "width": sizes.input_size},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder


# -- their inference, by the equations ---------------------------------------------------------
def authors_pixels(gray: np.ndarray) -> torch.Tensor:
    """Their processor: 8-bit grey copied to RGB, PIL bicubic to the input size, /255, mean/std."""
    levels = np.rint(gray * 255).astype(np.uint8)
    rgb = Image.fromarray(np.stack([levels] * 3, axis=-1)).resize(
        (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC
    )
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _attention(x, t, p, names, bias=None):
    """Multi-head attention of (L, D) ``x``; the query, key and value projections are
    ``p + name`` in ``t`` for the three ``names``."""
    length = x.shape[0]
    heads = [
        (x @ t[p + n + ".weight"].T + t[p + n + ".bias"]).view(length, HEADS, -1).transpose(0, 1)
        for n in names
    ]
    scores = heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(WIDTH // HEADS)
    if bias is not None:
        scores = scores + bias
    return (scores.softmax(-1) @ heads[2]).transpose(0, 1).reshape(length, WIDTH)


def _dinov2_block(x: torch.Tensor, t: dict, p: str) -> torch.Tensor:
    """A DINOv2 layer, 4.x names: pre-norm attention and MLP with layer scale."""
    h = _layer_norm(x, t[p + "norm1.weight"], t[p + "norm1.bias"], 1e-6)
    a = _attention(h, t, p + "attention.attention.", ("query", "key", "value"))
    a = a @ t[p + "attention.output.dense.weight"].T + t[p + "attention.output.dense.bias"]
    x = x + t[p + "layer_scale1.lambda1"] * a
    h = _layer_norm(x, t[p + "norm2.weight"], t[p + "norm2.bias"], 1e-6)
    h = F.gelu(h @ t[p + "mlp.fc1.weight"].T + t[p + "mlp.fc1.bias"])
    h = h @ t[p + "mlp.fc2.weight"].T + t[p + "mlp.fc2.bias"]
    return x + t[p + "layer_scale2.lambda1"] * h


def _image_tokens(pixels: torch.Tensor, t: dict) -> torch.Tensor:
    """(3, S, S) -> (1 + N, D): patches, CLS, 4.39-interpolated positions, blocks, final norm,
    the align blocks and the shared norm."""
    v = "vision_model."
    patches = (
        F.conv2d(
            pixels[None],
            t[v + "embeddings.patch_embeddings.projection.weight"],
            t[v + "embeddings.patch_embeddings.projection.bias"],
            stride=PATCH,
        )[0]
        .flatten(1)
        .T
    )
    table = t[v + "embeddings.position_embeddings"][0]
    side, grid = PRETRAIN_SIZE // PATCH, INPUT_SIZE // PATCH
    source = table[1:].T.reshape(1, WIDTH, side, side)
    factor = (grid + 0.1) / side
    moved = F.interpolate(
        source, scale_factor=(factor, factor), mode="bicubic", align_corners=False
    )
    x = torch.cat([t[v + "embeddings.cls_token"][0] + table[:1], patches + moved[0].flatten(1).T])
    for layer in range(VISION_LAYERS):
        x = _dinov2_block(x, t, f"{v}encoder.layer.{layer}.")
    x = _layer_norm(x, t[v + "layernorm.weight"], t[v + "layernorm.bias"], 1e-6)
    for layer in range(ALIGN_LAYERS):
        x = _dinov2_block(x, t, f"align_transformer.transformer_layers.layer.{layer}.")
    return _shared_norm(x, t)


def _shared_norm(x: torch.Tensor, t: dict) -> torch.Tensor:
    n = "loss_fns.RadZeroLoss.layer_norm."
    return _layer_norm(x, t[n + "weight"], t[n + "bias"], 1e-5)


def _bucket(relative: torch.Tensor, buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """MPNet's (T5-style, bidirectional) relative-position bucket of ``memory - context``."""
    half = buckets // 2
    n = -relative
    sign = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    far = (
        exact
        + (
            torch.log(n.float().clamp(min=1) / exact)
            / math.log(max_distance / exact)
            * (half - exact)
        ).long()
    )
    return sign + torch.where(n < exact, n, far.clamp(max=half - 1))


def _text_embedding(ids: list[int], t: dict) -> torch.Tensor:
    """One unpadded token sequence through MPNet, mean of its states, then the shared norm."""
    m = "text_model."
    length = len(ids)
    positions = torch.arange(length) + 2  # padding id 1, positions start after it
    x = (
        t[m + "embeddings.word_embeddings.weight"][ids]
        + t[m + "embeddings.position_embeddings.weight"][positions]
    )
    x = _layer_norm(
        x, t[m + "embeddings.LayerNorm.weight"], t[m + "embeddings.LayerNorm.bias"], 1e-5
    )
    index = torch.arange(length)
    relative = index[None, :] - index[:, None]
    bias = t[m + "encoder.relative_attention_bias.weight"][_bucket(relative)].permute(2, 0, 1)
    for layer in range(TEXT_LAYERS):
        p = f"{m}encoder.layer.{layer}."
        a = _attention(x, t, p + "attention.attn.", "qkv", bias)
        a = a @ t[p + "attention.attn.o.weight"].T + t[p + "attention.attn.o.bias"]
        x = _layer_norm(
            a + x, t[p + "attention.LayerNorm.weight"], t[p + "attention.LayerNorm.bias"], 1e-5
        )
        h = F.gelu(x @ t[p + "intermediate.dense.weight"].T + t[p + "intermediate.dense.bias"])
        h = h @ t[p + "output.dense.weight"].T + t[p + "output.dense.bias"]
        x = _layer_norm(
            h + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], 1e-5
        )
    return _shared_norm(x.mean(0), t)


def expected_outputs(
    folder: Path, gray: np.ndarray, phrases: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Their logits (P,) and maps (P, H, W) for one grey image in [0, 1] of 8-bit levels."""
    t = {k: v.double() for k, v in load_file(folder / "model.safetensors").items()}
    tau = math.exp(float(t["loss_fns.RadZeroLoss.loss_temperature"]))
    tokens = _image_tokens(authors_pixels(gray).double(), t)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    unit = F.normalize(tokens, dim=-1)
    logits, maps = [], []
    for phrase in phrases:
        text = _text_embedding(tokenizer(phrase)["input_ids"], t)
        scores = unit @ F.normalize(text, dim=0) / tau  # (1 + N,), CLS first
        pooled = F.normalize((scores.softmax(0)[:, None] * unit).sum(0), dim=0)
        logits.append(pooled @ F.normalize(text, dim=0) / tau)
        grid = INPUT_SIZE // PATCH
        patch_scores = scores[1:].reshape(1, 1, grid, grid)
        up = F.interpolate(patch_scores, size=gray.shape, mode="bilinear", align_corners=False)
        maps.append(up[0, 0].sigmoid())
    return torch.stack(logits).float(), torch.stack(maps).float()
