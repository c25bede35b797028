"""The authors' released RadZero checkpoint -> this project's ``save_pretrained`` layout.

The authors' model is a transformers ``PreTrainedModel`` ("CxrAlignModel"); its folder holds
``config.json`` (``vision_config``, ``text_config``, ``align_transformer_config``, ``loss``),
``model.safetensors`` (bfloat16: ``vision_model.*``, ``text_model.*``,
``align_transformer.transformer_layers.layer.N.*``, ``loss_fns.RadZeroLoss.*``), the MPNet
tokenizer's files and ``preprocessor_config.json``. :func:`convert_authors` maps every tensor
by name and shape and refuses, naming it, whatever it does not understand: an unexpected or
missing tensor, a shape that does not match, an option that changes what the model computes and
has no equivalent here. Options that only shaped training are listed in the card.

The converted folder is self-contained: it bundles the frozen DINOv2 backbone (``backbone/``, a
transformers folder) and the fine-tuned MPNet encoder with its tokenizer (``text/``, a
sentence-transformers folder), and sets what the authors' numerics need (docs/reproduce.md):
CLS inside the align attention and VL-CABS, the shared LayerNorm, mean pooling, one
temperature, transformers 4.39's position-embedding interpolation and their preprocessing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_file, save_file

from radzero import storage
from radzero.model.config import CONFIG_NAME, FORMAT_VERSION
from radzero.model.preprocess import PreprocessConfig
from radzero.model.radzero import WEIGHTS_NAME, RadZero, copy_pretrained, state_mismatch
from radzero.registry import CARD_NAME

ARCHITECTURE = "CxrAlignModel"
CONVERTER_VERSION = 1  # part of from_authors' cache key: a changed mapping converts again
BACKBONE_FOLDER, TEXT_FOLDER = "backbone", "text"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)

# Top-level config keys: the ones read, and the ones that describe the file only.
_READ_KEYS = {
    "architectures",
    "vision_config",
    "text_config",
    "align_transformer_config",
    "compute_logits_type",
    "loss",
}
_INFORMATIONAL_KEYS = {
    "kwargs",  # repeats loss, compute_logits_type, module_to_update
    "module_to_update",  # which modules trained
    "pretrained_dir",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "_name_or_path",
    "auto_map",  # the hub release's remote-code pointers
    "model_type",
}
_TEXT_KEYS = {
    "pretrained_name_or_path",
    "pretrained_tokenizer_name_or_path",
    "use_text_projection",
    "use_cls_token",
    "model_type",
}
# RadZeroLoss options that change the logits or maps, and the values this project computes.
_LOSS_NUMERICS = {"sim_op": "cos", "attn_temperature": None, "text_features_l2_norm": False}
# Align-block options this project's AlignBlock implements only with these values.
_ALIGN_FIXED = {
    "hidden_act": "gelu",
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "use_layer_norm": False,
    "projector_config": None,
    "layer_norm_eps": 1e-6,
}
# The authors' processor steps, and the values their preprocessing (ours: "bicubic-8bit") has.
_PROCESSOR_FIXED = {
    "do_resize": True,
    "resample": 3,  # PIL bicubic
    "do_rescale": True,
    "do_normalize": True,
}
# DINOv2 attention: transformers 4.x names (the release) -> 5.x names (this project's pin).
_DINOV2_4X_NAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}
_VISION, _TEXT = "vision_model.", "text_model."
_ALIGN = "align_transformer.transformer_layers.layer."
_TEMPERATURE = "loss_fns.RadZeroLoss.loss_temperature"
_SHARED_NORM = "loss_fns.RadZeroLoss.layer_norm."


class CheckpointError(ValueError):
    """The folder is not an authors' checkpoint this converter understands; says what and where."""


def convert_authors(source: str | os.PathLike, target: str | os.PathLike) -> dict[str, Any]:
    """Convert the authors' checkpoint folder ``source`` into a ``save_pretrained`` folder at
    ``target`` (local or ``s3://``), with ``card.json`` naming the source; returns the card.

    Every tensor is mapped or the conversion fails (:class:`CheckpointError`) before anything
    is written to ``target``, which must be empty or absent. The result loads with
    :meth:`RadZero.from_pretrained`.
    """
    if storage.folder_files(target):
        raise CheckpointError(f"{target} already holds files: convert into an empty folder")
    source_dir = Path(storage.local_folder(source))
    config = _read_json(source_dir / CONFIG_NAME)
    tensors = _read_tensors(source_dir)
    processor = _read_json(source_dir / "preprocessor_config.json")
    plan = _plan(config, tensors, processor)
    with tempfile.TemporaryDirectory(prefix="radzero-convert-") as work:
        folder = Path(work)
        _write_backbone(folder / BACKBONE_FOLDER, plan, tensors, processor)
        _write_text(folder / TEXT_FOLDER, plan, tensors, source_dir)
        save_file(_trainable(plan, tensors), folder / WEIGHTS_NAME)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": plan["model"],
            "preprocess": plan["preprocess"],
        }
        (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        RadZero.from_pretrained(folder)  # every bundled part loads, every weight is in place
        copy_pretrained(folder, target)
    card = {
        "source": str(source),
        "format": ARCHITECTURE,
        "converted_by": f"radzero.model.convert (version {CONVERTER_VERSION})",
        "source_transformers_version": config.get("transformers_version"),
        "tensors": len(tensors),
        "parameters": plan["parameters"],
        "training_only_options": plan["training_only"],
    }
    storage.write_text(storage.join(target, CARD_NAME), json.dumps(card, indent=2))
    return card


def from_authors(folder: str | os.PathLike, cache: str | os.PathLike | None = None) -> RadZero:
    """A :class:`RadZero` holding the authors' released weights from their checkpoint folder.

    The folder is converted once (:func:`convert_authors`) into ``cache`` (default
    ``$RADZERO_CACHE/converted`` or ``~/.cache/radzero/converted``), keyed by its files'
    names, sizes and modification times, so the model refers to real folders and loads again
    without converting. The conversion is renamed into place whole, so processes converting
    the same folder at once never load a half-written one.
    """
    files = storage.folder_files(folder)
    key = hashlib.sha256(json.dumps([CONVERTER_VERSION, files]).encode()).hexdigest()[:16]
    root = Path(cache) if cache else storage.cache_root() / "converted"
    target = root / key
    if not (target / CONFIG_NAME).is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{key}.", dir=root) as staging:
            convert_authors(folder, Path(staging) / "model")
            with contextlib.suppress(OSError):  # another process's conversion is there
                os.rename(Path(staging) / "model", target)
    return RadZero.from_pretrained(target)


# -- reading ---------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: not the authors' checkpoint folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {type(data).__name__}, expected an object")
    return data


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors`` or of the shards its index names, as float32
    (the release is bfloat16, which float32 holds exactly)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
    else:
        shards = [WEIGHTS_NAME]
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = folder / shard
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: the checkpoint's weights")
        try:
            tensors.update(load_file(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is corrupt or unreadable: {err}") from err
    return {name: value.float() for name, value in tensors.items()}


# -- the plan: configs and checks, before anything is written --------------------------------
def _plan(
    config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], processor: Mapping[str, Any]
) -> dict[str, Any]:
    unknown = sorted(set(config) - _READ_KEYS - _INFORMATIONAL_KEYS)
    if unknown:
        raise CheckpointError(f"config.json has keys this converter does not know: {unknown}")
    missing = sorted(_READ_KEYS - set(config))
    if missing:
        raise CheckpointError(f"config.json lacks {missing}")
    if config["architectures"] != [ARCHITECTURE]:
        raise CheckpointError(
            f"config.json architectures is {config['architectures']!r}, expected [{ARCHITECTURE!r}]"
        )
    if config["compute_logits_type"] != "radzero":
        raise CheckpointError(
            f"compute_logits_type {config['compute_logits_type']!r} has no equivalent here "
            "(only 'radzero': VL-CABS)"
        )
    own = {_TEMPERATURE, _SHARED_NORM + "weight", _SHARED_NORM + "bias"}
    unexpected = sorted(
        name
        for name in tensors
        if not name.startswith((_VISION, _TEXT, _ALIGN)) and name not in own
    )
    if unexpected:
        raise CheckpointError(f"{len(unexpected)} unexpected tensors: {unexpected[:5]}")
    vision, img_size = _vision_config(config["vision_config"])
    width = int(vision["hidden_size"])
    training_only = _check_loss(config["loss"], width)
    _check_text_config(config["text_config"])
    layers, align = _align_config(config["align_transformer_config"], width, tensors)
    image_size = _image_size(img_size, int(vision.get("patch_size", 14)), processor)
    log_tau = _tensor(tensors, _TEMPERATURE, (1,))
    for part in ("weight", "bias"):
        _tensor(tensors, _SHARED_NORM + part, (width,))
    text = _text_shapes(tensors)
    model = {
        "vision": {
            "checkpoint": f"./{BACKBONE_FOLDER}",
            "image_size": image_size,
            "position_interpolation": "scale_factor",
        },
        "align": {
            "layers": layers,
            "heads": align["num_attention_heads"],
            "mlp_ratio": float(align["mlp_ratio"]),
            "layerscale": float(align["layerscale_value"]),
            "window": None,
            "position": "none",
            "include_cls": True,
            "shared_norm": True,
        },
        "text": {
            "checkpoint": f"./{TEXT_FOLDER}",
            "trainable": False,
            "max_length": text["max_position_embeddings"] - 2,
        },
        "temperature": {"init": math.exp(float(log_tau)), "learnable": True},
        "similarity": "cos",
    }
    preprocess = PreprocessConfig(
        image_size=image_size,
        mean=tuple(processor["image_mean"]),
        std=tuple(processor["image_std"]),
        channels=3,
        resize="bicubic-8bit",
    )
    return {
        "model": model,
        "preprocess": preprocess.to_dict(),
        "vision": vision,
        "text": text,
        "layers": layers,
        "training_only": training_only,
        "parameters": _parameter_counts(tensors),
    }


def _vision_config(vision: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The Dinov2Config keyword arguments of ``vision_config`` and its ``img_size``."""
    if not isinstance(vision, Mapping) or "hidden_size" not in vision:
        raise CheckpointError("config.json vision_config is not a DINOv2 config")
    extras = {"img_size", "pretrained_name_or_path", "model_type", "transformers_version"}
    kwargs = {key: value for key, value in vision.items() if key not in extras}
    return kwargs, vision.get("img_size")


def _image_size(size: int | None, patch_size: int, processor: Mapping[str, Any]) -> int:
    """The input side: ``vision_config.img_size``, which the processor's size must equal."""
    for key, value in _PROCESSOR_FIXED.items():
        if processor.get(key, value) != value:
            raise CheckpointError(
                f"preprocessor_config.json {key}={processor[key]!r} has no equivalent here "
                f"(the authors' preprocessing has {value!r})"
            )
    if abs(float(processor.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        raise CheckpointError("preprocessor_config.json rescale_factor must be 1/255")
    for key in ("image_mean", "image_std"):
        if len(processor.get(key) or ()) != 3:
            raise CheckpointError(f"preprocessor_config.json needs 3 values of {key}")
    given = processor.get("size")
    sides = {given.get("height"), given.get("width")} if isinstance(given, Mapping) else {given}
    if size is None and len(sides) == 1:
        size = next(iter(sides))
    if not isinstance(size, int) or sides != {size}:
        raise CheckpointError(
            f"input size: vision_config.img_size {size!r} and preprocessor_config.json size "
            f"{given!r} must name one square side"
        )
    if size % patch_size:
        raise CheckpointError(f"img_size {size} is not a multiple of patch_size {patch_size}")
    return size


def _check_loss(loss: Mapping[str, Any], width: int) -> dict[str, Any]:
    """Refuse RadZeroLoss options that change the logits; return the training-only ones."""
    if not isinstance(loss, Mapping) or "RadZeroLoss" not in loss.get("apply", ()):
        raise CheckpointError("config.json loss does not apply RadZeroLoss")
    options = loss.get("RadZeroLoss") or {}
    for key, value in _LOSS_NUMERICS.items():
        if options.get(key, value) != value:
            raise CheckpointError(
                f"loss.RadZeroLoss.{key}={options[key]!r} has no equivalent here "
                f"(this project computes {key}={value!r})"
            )
    if options.get("hidden_dim", width) != width:
        raise CheckpointError(
            f"loss.RadZeroLoss.hidden_dim {options['hidden_dim']} != the vision width {width}"
        )
    read = set(_LOSS_NUMERICS) | {"hidden_dim", "loss_temperature"}
    return {key: value for key, value in options.items() if key not in read} | {
        "apply": list(loss["apply"])
    }


def _check_text_config(text: Mapping[str, Any]) -> None:
    unknown = sorted(set(text) - _TEXT_KEYS)
    if unknown:
        raise CheckpointError(
            f"config.json text_config has keys this converter does not know: {unknown}"
        )
    for key in ("use_text_projection", "use_cls_token"):
        if text.get(key, False):
            raise CheckpointError(
                f"text_config.{key}=true has no equivalent here (the released RadZero has "
                "no text projection and mean-pools)"
            )


def _align_config(
    align: Mapping[str, Any], width: int, tensors: Mapping[str, torch.Tensor]
) -> tuple[int, dict[str, Any]]:
    if not isinstance(align, Mapping):
        raise CheckpointError("config.json align_transformer_config is not a DINOv2 config")
    settings = dict(transformers.Dinov2Config().to_dict()) | dict(align)
    for key, value in _ALIGN_FIXED.items():
        if settings.get(key, value) != value:
            raise CheckpointError(
                f"align_transformer_config.{key}={settings[key]!r} has no equivalent here "
                f"(this project's align layers have {value!r})"
            )
    if settings["hidden_size"] != width:
        raise CheckpointError(
            f"align_transformer_config.hidden_size {settings['hidden_size']} != the vision "
            f"width {width}"
        )
    if width % settings["num_attention_heads"]:
        raise CheckpointError("align_transformer_config: width not divisible by the heads")
    layers = int(settings["num_hidden_layers"])
    present = {
        int(m.group(1))
        for name in tensors
        if (m := re.match(r"align_transformer\.transformer_layers\.layer\.(\d+)\.", name))
    }
    if present != set(range(layers)):
        raise CheckpointError(
            f"align_transformer_config has {layers} layers but the weights hold layers "
            f"{sorted(present)}"
        )
    return layers, settings


def _text_shapes(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """MPNet's sizes, read from its weights (the config names only the hub model)."""
    words = _tensor(tensors, _TEXT + "embeddings.word_embeddings.weight")
    positions = _tensor(tensors, _TEXT + "embeddings.position_embeddings.weight")
    bias = _tensor(tensors, _TEXT + "encoder.relative_attention_bias.weight")
    layers = {
        int(m.group(1))
        for name in tensors
        if (m := re.match(r"text_model\.encoder\.layer\.(\d+)\.", name))
    }
    if not layers or layers != set(range(len(layers))):
        raise CheckpointError(f"text_model has layers {sorted(layers)}, expected 0..N-1")
    inner = _tensor(tensors, _TEXT + "encoder.layer.0.intermediate.dense.weight")
    width, heads = int(words.shape[1]), int(bias.shape[1])
    if width % heads:
        raise CheckpointError(f"text_model width {width} is not divisible by {heads} heads")
    return {
        "vocab_size": int(words.shape[0]),
        "hidden_size": width,
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "intermediate_size": int(inner.shape[0]),
        "max_position_embeddings": int(positions.shape[0]),
        "relative_attention_num_buckets": int(bias.shape[0]),
    }


def _tensor(
    tensors: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...] | None = None
) -> torch.Tensor:
    if name not in tensors:
        raise CheckpointError(f"the weights lack {name}")
    if shape is not None and tuple(tensors[name].shape) != shape:
        raise CheckpointError(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")
    return tensors[name]


def _parameter_counts(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    counts = {"vision": 0, "text": 0, "align": 0, "other": 0}
    for name, value in tensors.items():
        part = {"vision_model": "vision", "text_model": "text", "align_transformer": "align"}
        counts[part.get(name.split(".")[0], "other")] += value.numel()
    return counts


# -- writing ----------------------------------------------------------------------------------
def _strict_load(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` or name every missing, unexpected and misshapen tensor."""
    mismatch = state_mismatch(module.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{what} does not match its config: {mismatch}")
    module.load_state_dict(state, strict=True)


def _dinov2_names(name: str) -> str:
    for old, new in _DINOV2_4X_NAMES.items():
        name = name.replace(old, new)
    return name


def _write_backbone(
    folder: Path, plan: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], processor: dict
) -> None:
    """The frozen backbone as a transformers 5 DINOv2 folder, with the authors' processor."""
    config = transformers.Dinov2Config(**plan["vision"])
    backbone = transformers.Dinov2Model(config)
    state = {
        _dinov2_names(name[len(_VISION) :]): value
        for name, value in tensors.items()
        if name.startswith(_VISION)
    }
    _strict_load(backbone, state, "vision_model")
    backbone.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def _write_text(
    folder: Path, plan: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], source: Path
) -> None:
    """The MPNet encoder and the folder's tokenizer as a sentence-transformers folder with mean
    pooling over the attention mask (the authors' text embedding)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    if not (source / "tokenizer.json").is_file() and not (source / "vocab.txt").is_file():
        raise CheckpointError(f"{source} has no tokenizer files (tokenizer.json or vocab.txt)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id != 1:
        raise CheckpointError(
            f"the tokenizer's pad token id is {tokenizer.pad_token_id}; MPNet's position ids "
            "assume 1"
        )
    config = transformers.MPNetConfig(
        **plan["text"],
        layer_norm_eps=1e-5,  # all-mpnet-base-v2's (the class's default is 1e-12)
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    encoder = transformers.MPNetModel(config)
    state = {name[len(_TEXT) :]: value for name, value in tensors.items() if name.startswith(_TEXT)}
    _strict_load(encoder, state, "text_model")
    with tempfile.TemporaryDirectory(prefix="radzero-mpnet-") as plain:
        encoder.save_pretrained(plain)
        tokenizer.save_pretrained(plain)
        modules = [Transformer(plain), Pooling(config.hidden_size, "mean")]
        SentenceTransformer(modules=modules, device="cpu").save(str(folder))


def _trainable(
    plan: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The weights of this project's ``model.safetensors``: align blocks, shared norm, log tau."""
    out: dict[str, torch.Tensor] = {"log_tau": tensors[_TEMPERATURE].reshape(()).clone()}
    for part in ("weight", "bias"):
        out[f"norm.{part}"] = tensors[_SHARED_NORM + part]
    for layer in range(plan["layers"]):
        given = {
            _dinov2_names("." + name[len(f"{_ALIGN}{layer}.") :])[1:]: value
            for name, value in tensors.items()
            if name.startswith(f"{_ALIGN}{layer}.")
        }
        ours = f"align.blocks.{layer}."
        mapped = {
            "norm1": "norm1",
            "norm2": "norm2",
            "attention.o_proj": "proj",
            "mlp.fc1": "mlp.0",
            "mlp.fc2": "mlp.2",
        }
        for part in ("weight", "bias"):
            for theirs, name in mapped.items():
                out[ours + f"{name}.{part}"] = _pop(given, f"{theirs}.{part}")
            out[ours + f"qkv.{part}"] = torch.cat(
                [_pop(given, f"attention.{p}_proj.{part}") for p in "qkv"]
            )
        out[ours + "scale1"] = _pop(given, "layer_scale1.lambda1")
        out[ours + "scale2"] = _pop(given, "layer_scale2.lambda1")
        if given:
            raise CheckpointError(f"align layer {layer} has unexpected tensors: {sorted(given)}")
    return {name: value.contiguous() for name, value in out.items()}


def _pop(given: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in given:
        raise CheckpointError(f"an align layer lacks {name}")
    return given.pop(name)
