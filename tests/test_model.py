"""The RadZero module: shapes, frozen parts, configs, checkpoints, golden outputs, the API."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import radzero
from radzero.model import (
    RadZero,
    RadZeroConfig,
    backbone_geometry,
    check_model_reference,
    create_model,
    list_models,
    resolve_model_config,
    resolve_preprocess,
)
from radzero.model.config import VisionConfig
from radzero.model.radzero import WEIGHTS_NAME


def build(config: dict) -> RadZero:
    torch.manual_seed(0)
    return create_model(config).eval()


def test_inference_api_shapes_and_ranges(tiny_config):
    model = build(tiny_config)
    pixels = torch.randn(2, 3, 64, 64)
    assert model.encode_image(pixels).shape == (2, 16, 64)  # 4x4 patches, CLS left out
    assert model.encode_text(["There is effusion", "There is no effusion"]).shape == (2, 64)
    probs = model.classify(["effusion", "nodule", "mass"], images=pixels)
    # The sigmoid of VL-CABS's logits for the config's prompt, "There is {}".
    text = model.encode_text([f"There is {c}" for c in ("effusion", "nodule", "mass")])
    logits, _ = model.score(model.encode_image(pixels), text)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs, torch.sigmoid(logits))
    maps = model.similarity_maps(["effusion", "left lung"], images=pixels)
    assert maps.shape == (2, 2, 64, 64) and maps.min() >= 0 and maps.max() <= 1


def test_cached_features_or_tokens_stand_in_for_images_and_exactly_one_is_required(tiny_config):
    model = build(tiny_config)
    pixels = torch.randn(2, 3, 64, 64)
    features = model.backbone_tokens(pixels)
    tokens = model.encode_image(pixels)
    for given in ({"features": features}, {"tokens": tokens}):
        torch.testing.assert_close(
            model.classify(["effusion"], **given), model.classify(["effusion"], images=pixels)
        )
        torch.testing.assert_close(
            model.similarity_maps(["mass"], **given),
            model.similarity_maps(["mass"], images=pixels),
        )
    one = r"exactly one of images= .*, features= .* or tokens="
    for call in (model.classify, model.similarity_maps):
        with pytest.raises(TypeError, match=one):
            call(["effusion"])
        with pytest.raises(TypeError, match=one):
            call(["effusion"], images=pixels, features=features)
        with pytest.raises(TypeError, match=one):
            call(["effusion"], features=features, tokens=tokens)


def test_maps_are_the_upsampled_sigmoid_of_the_patch_scores(tiny_config):
    model = build(tiny_config)
    pixels = torch.randn(1, 3, 64, 64)
    _, scores = model.score(
        model.encode_image(pixels), model.encode_text(["nodule"]), return_scores=True
    )
    coarse = model.similarity_maps(["nodule"], images=pixels, size=(4, 4))
    torch.testing.assert_close(coarse.flatten(), scores.sigmoid().flatten())


def test_backbone_is_frozen_and_stays_in_eval_mode(tiny_config):
    model = build(tiny_config).train()
    assert not model.backbone.training and not model.backbone.model.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(not n.startswith("backbone.") for n in model.trainable_state_dict())


def test_other_input_sizes_interpolate_position_embeddings(tiny_config):
    model = build(tiny_config)
    tokens = model.encode_image(torch.randn(1, 3, 96, 96))
    assert tokens.shape == (1, 36, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        model.encode_image(torch.randn(1, 3, 70, 70))


def test_image_size_must_be_a_multiple_of_the_patch_size(tiny_config):
    tiny_config["vision"]["image_size"] = 100
    with pytest.raises(ValueError, match="multiple of the backbone's patch size"):
        build(tiny_config)


@pytest.mark.parametrize(
    "align",
    [
        {"layers": 0},
        {"layers": 2, "include_cls": True, "window": None, "position": "learned"},
        {"layers": 1, "shared_norm": False},
    ],
)
def test_align_variants_train_end_to_end(tiny_config, align):
    tiny_config["align"] = align
    tiny_config["similarity"] = "dot"
    model = build(tiny_config).train()
    logits, _ = model.score(
        model.encode_image(torch.randn(2, 3, 64, 64)), model.encode_text(["a", "b", "c"])
    )
    logits.sum().backward()
    grads = [p.grad for p in model.align.parameters()]
    assert logits.shape == (2, 3) and all(g is not None for g in grads)


def test_a_trainable_text_encoder_caches_only_in_eval_without_gradients(tiny_config):
    tiny_config["text"]["trainable"] = True
    model = build(tiny_config).eval()
    model.encode_text(["effusion"])
    assert not model.text._cache  # gradients on: its weights may still be trained
    with torch.no_grad():
        first = model.encode_text(["effusion", "mass"])
    assert set(model.text._cache) == {"effusion", "mass"}
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(["effusion", "mass"]), first)
    model.train()
    assert not model.text._cache
    model.eval()
    with torch.no_grad():
        model.encode_text(["effusion"])
    model.load_state_dict(model.state_dict())
    assert not model.text._cache  # new weights: the old embeddings are gone


def test_the_text_cache_drops_the_least_recently_used(tiny_config):
    model = build(tiny_config)
    model.text.cache_size = 2
    model.encode_text(["a"])
    model.encode_text(["b"])
    model.encode_text(["a"])  # "a" used last: "b" goes first
    model.encode_text(["c"])
    assert list(model.text._cache) == ["a", "c"]
    model.encode_text(["x", "y", "z"])  # a call's own sentences are all kept
    assert list(model.text._cache) == ["x", "y", "z"]


def test_identical_sentences_are_encoded_once_and_cached_when_frozen(tiny_config):
    model = build(tiny_config)
    text = model.encode_text(["no effusion", "effusion", "no effusion"])
    torch.testing.assert_close(text[0], text[2])
    assert set(model.text._cache) == {"no effusion", "effusion"}
    model.double()  # moving the model drops embeddings cached in the old dtype
    assert not model.text._cache
    assert model.encode_text(["effusion"]).dtype == torch.float64


def test_save_and_load_give_identical_outputs(tiny_config, tmp_path):
    tiny_config["text"]["trainable"] = True
    model = build(tiny_config)
    with torch.no_grad():  # make the trained weights differ from a fresh build
        for p in model.align.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = RadZero.from_pretrained(tmp_path / "ckpt").eval()
    pixels = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        loaded.classify(["effusion"], images=pixels),
        model.classify(["effusion"], images=pixels),
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        loaded.similarity_maps(["nodule"], images=pixels),
        model.similarity_maps(["nodule"], images=pixels),
        rtol=0,
        atol=0,
    )


def test_checkpoint_holds_only_trainable_weights(tiny_config, tmp_path):
    model = build(tiny_config)
    model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / WEIGHTS_NAME)))
    assert keys == set(model.trainable_state_dict())
    assert not any(k.startswith(("backbone.", "text.encoder.")) for k in keys)  # frozen parts


def test_corrupted_checkpoint_gives_a_clear_error(tiny_config, tmp_path):
    build(tiny_config).save_pretrained(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        RadZero.from_pretrained(tmp_path)


def test_checkpoint_that_does_not_match_its_config_gives_a_clear_error(tiny_config, tmp_path):
    build(tiny_config).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["model"]["align"]["layers"] = 2
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match its config"):
        RadZero.from_pretrained(tmp_path)


def test_missing_checkpoint_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        RadZero.from_pretrained(tmp_path)


def test_config_rejects_unknown_keys_and_bad_values(tiny_config):
    with pytest.raises(ValueError, match=r"unknown config key.*align\.layer"):
        RadZeroConfig.from_dict({"align": {"layer": 2}})
    with pytest.raises(ValueError, match="similarity must be one of"):
        RadZeroConfig.from_dict({"similarity": "l2"})
    with pytest.raises(ValueError, match="init must be > 0"):
        RadZeroConfig.from_dict({"temperature": {"init": 0}})
    with pytest.raises(ValueError, match="unknown model config"):
        create_model("radzero-huge")


def test_resolve_model_config_merges_overrides_into_a_registered_name_or_a_saved_folder(
    tiny_config, tmp_path
):
    config = resolve_model_config("radzero-tiny", {"vision": {"image_size": 448}})
    registered = json.loads(
        (resources.files("radzero.model") / "configs/radzero-tiny.json").read_text()
    )
    assert config.vision.image_size == 448
    assert config.vision.hf_config == registered["vision"]["hf_config"]  # the rest is kept
    assert config.align.layers == registered["align"]["layers"]
    build(tiny_config).save_pretrained(tmp_path / "saved")
    saved = resolve_model_config(tmp_path / "saved", {"align": {"layers": 3}})
    assert saved.align.layers == 3 and saved.vision.image_size == 64
    assert saved.align.window == tiny_config["align"]["window"]
    with pytest.raises(ValueError, match=r"unknown config key.*align\.layer"):
        resolve_model_config("radzero-tiny", {"align": {"layer": 3}})
    linear = create_model(RadZeroConfig.from_dict(tiny_config), {"align": {"layers": 0}})
    assert linear.align.linear is not None and linear.config.align.window == 1


def test_an_unknown_model_name_lists_the_registered_ones_and_the_closest(tmp_path):
    with pytest.raises(ValueError) as caught:
        resolve_model_config("radzero-tiny-locl")
    message = str(caught.value)
    assert "unknown model config 'radzero-tiny-locl'" in message
    assert "did you mean 'radzero-tiny-local'?" in message
    assert all(name in message for name in list_models())
    with pytest.raises(ValueError, match="unknown model config 'nothing-like-it'"):
        check_model_reference("nothing-like-it")
    for reference in ("radzero-tiny", "runs/x/model", "s3://bucket/model", str(tmp_path)):
        check_model_reference(reference)  # registered or path-like: checked when read
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        resolve_model_config(tmp_path / "empty")


def test_shipped_configs_parse():
    names = list_models()
    assert {"radzero-tiny", "radzero-xray-dinov2"} <= set(names)
    paper = RadZeroConfig.from_dict(
        json.loads(json.dumps(create_config_dict("radzero-xray-dinov2")))
    )
    assert paper.vision.image_size == 518 and paper.align.layers == 2
    assert paper.vision.checkpoint == "StanfordAIMI/dinov2-base-xray-224"


def create_config_dict(name: str) -> dict:
    from radzero.model import get_model_config

    return get_model_config(name).to_dict()


def test_temperature_clamp_and_fixed(tiny_config):
    tiny_config["temperature"] = {"init": 0.5, "learnable": False, "max": 0.2}
    model = build(tiny_config)
    assert model.tau.item() == pytest.approx(0.2)
    assert "log_tau" not in model.trainable_state_dict()


def test_preprocessing_resolves_from_the_processor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.25, 0.25, 0.25],
                "crop_size": {"height": 224, "width": 224},
            }
        )
    )
    cfg = resolve_preprocess(tmp_path)
    assert (cfg.image_size, cfg.mean, cfg.std) == (224, (0.5,) * 3, (0.25,) * 3)
    assert resolve_preprocess(tmp_path, image_size=518).image_size == 518
    assert resolve_preprocess(None).mean == pytest.approx((0.485, 0.456, 0.406))


def test_backbone_loads_from_a_local_checkpoint_folder(tiny_config, tmp_path):
    """The real loading path (Dinov2Model.from_pretrained + processor config) on a folder."""
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**tiny_config["vision"]["hf_config"])).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "BitImageProcessor",
                "image_mean": [0.5] * 3,
                "image_std": [0.2] * 3,
                "crop_size": {"height": 64, "width": 64},
            }
        )
    )
    model = build({"vision": {"checkpoint": str(tmp_path)}, "text": {"trainable": False}})
    assert model.preprocess.image_size == 64 and model.preprocess.mean == (0.5,) * 3
    assert model.encode_image(torch.randn(1, 3, 64, 64)).shape == (1, 17, 64)


def _checkpoint_folder(folder: Path, hf_config: dict, weights: bool = True) -> Path:
    """A local DINOv2 checkpoint (config.json, weights unless told) with its processor config."""
    from transformers import Dinov2Config, Dinov2Model

    if weights:
        Dinov2Model(Dinov2Config(**hf_config)).save_pretrained(folder)
    else:
        Dinov2Config(**hf_config).save_pretrained(folder)
    processor = {"image_mean": [0.5] * 3, "image_std": [0.2] * 3, "crop_size": {"height": 96}}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def test_backbone_geometry_reads_configs_only(tiny_config, tmp_path):
    folder = _checkpoint_folder(tmp_path, tiny_config["vision"]["hf_config"], weights=False)
    assert not any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir())
    assert backbone_geometry(VisionConfig(checkpoint=str(folder))) == (96, 6, 64)  # processor
    assert backbone_geometry(VisionConfig(checkpoint=str(folder), image_size=128)) == (128, 8, 64)
    tiny = VisionConfig(hf_config=tiny_config["vision"]["hf_config"])
    assert backbone_geometry(tiny) == (64, 4, 64)  # the ViT's own input size
    size, grid, width = backbone_geometry(VisionConfig(**tiny_config["vision"]))
    tokens = build(tiny_config).backbone_tokens(torch.randn(1, 3, size, size))
    assert tokens.shape == (1, 1 + grid**2, width)
    with pytest.raises(ValueError, match="multiple of the backbone's patch size"):
        backbone_geometry(VisionConfig(checkpoint=str(folder), image_size=100))


def test_preprocessing_is_saved_with_the_model_and_restored_from_it(tiny_config, tmp_path):
    folder = _checkpoint_folder(tmp_path / "backbone", tiny_config["vision"]["hf_config"])
    model = build({"vision": {"checkpoint": str(folder)}, "text": {"trainable": False}})
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())["preprocess"]
    assert saved == {
        "image_size": 96,
        "mean": [0.5] * 3,
        "std": [0.2] * 3,
        "channels": 3,
        "resize": "bilinear",
    }
    # The backbone's processor changes afterwards: the saved model keeps its own preprocessing.
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1] * 3}))
    loaded = RadZero.from_pretrained(tmp_path / "model")
    assert loaded.preprocess == model.preprocess
    assert create_model({"vision": {"checkpoint": str(folder)}}).preprocess.mean == (0.1,) * 3
    # A config.json written before the preprocessing was saved resolves it as a new model does.
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    del meta["preprocess"]
    (tmp_path / "model" / "config.json").write_text(json.dumps(meta))
    assert RadZero.from_pretrained(tmp_path / "model").preprocess.mean == (0.1,) * 3


def test_preprocess_is_the_image_transform(tiny_config):
    from radzero.data.images import to_pixels

    model = build(tiny_config)
    gray = np.linspace(0, 1, 90 * 70, dtype=np.float32).reshape(90, 70)
    pixels = model.preprocess(gray)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    assert (model.preprocess.image_size, model.preprocess.channels) == (64, 3)
    torch.testing.assert_close(pixels, to_pixels(gray, model.preprocess), rtol=0, atol=0)
    expected = (model.preprocess(np.ones((64, 64), np.float32)) * 0.229 + 0.485)[0]
    torch.testing.assert_close(expected, torch.ones(64, 64))
    assert model.encode_image(pixels[None]).shape == (1, 16, 64)


# -- golden outputs ---------------------------------------------------------------------------
GOLDEN = Path(__file__).parent / "data" / "radzero_tiny_golden.safetensors"
GOLDEN_SENTENCES = ["There is pleural effusion", "The heart is enlarged", "A nodule in the apex"]
GOLDEN_FINDINGS = ["effusion", "cardiomegaly", "pneumothorax", "nodule"]
# Global attention with CLS and a trainable text encoder; per-patch layers with a sincos position.
GOLDEN_MODELS = ("radzero-tiny", "radzero-tiny-local")
UPDATE_GOLDEN = "RADZERO_UPDATE_GOLDEN"


def golden_image(height: int, width: int, phase: float) -> np.ndarray:
    """A grey (H, W) chest-like pattern from a formula: two dark lungs and a fine texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = y / height, x / width
    lungs = sum(np.exp(-((x - cx) ** 2) / 0.02 - (y - 0.5) ** 2 / 0.08) for cx in (0.3, 0.7))
    texture = 0.05 * np.sin(40 * x + 7 * y + phase)
    return np.clip(0.8 - 0.5 * lungs + texture, 0, 1).astype(np.float32)


def golden_outputs(name: str) -> dict[str, torch.Tensor]:
    """What ``create_model(name)`` gives, from torch seed 0, on two fixed images."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    images = [golden_image(256, 232, 0.0), golden_image(200, 240, 1.5)]
    pixels = torch.stack([model.preprocess(gray) for gray in images])
    with torch.no_grad():
        logits, _ = model.score(model.encode_image(pixels), model.encode_text(GOLDEN_SENTENCES))
    return {
        f"{name}/logits": logits,
        f"{name}/probabilities": model.classify(GOLDEN_FINDINGS, images=pixels),
        f"{name}/maps": model.similarity_maps(GOLDEN_SENTENCES, images=pixels, size=(28, 28)),
    }


def test_tiny_models_reproduce_their_golden_outputs():
    """Init, preprocessing, backbone, align layers, position signal, text encoder and VL-CABS
    against tests/data/radzero_tiny_golden.safetensors. After an intended change of the
    outputs, regenerate it: ``RADZERO_UPDATE_GOLDEN=1 pytest tests/test_model.py -k golden``."""
    outputs = {k: v for name in GOLDEN_MODELS for k, v in golden_outputs(name).items()}
    inputs = {"sentences": json.dumps(GOLDEN_SENTENCES), "findings": json.dumps(GOLDEN_FINDINGS)}
    if os.environ.get(UPDATE_GOLDEN):
        GOLDEN.parent.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in outputs.items()}, str(GOLDEN), metadata=inputs)
        pytest.skip(f"{UPDATE_GOLDEN} is set: wrote {GOLDEN}")
    from safetensors import safe_open

    with safe_open(str(GOLDEN), "pt") as file:
        assert file.metadata() == inputs
    golden = load_file(str(GOLDEN))
    assert golden.keys() == outputs.keys()
    for name, expected in golden.items():
        torch.testing.assert_close(
            outputs[name],
            expected,
            rtol=0,
            atol=1e-5,
            msg=lambda text, name=name: f"{name}: {text}",
        )


# -- the package ------------------------------------------------------------------------------
def test_top_level_api_without_importing_torch_or_ray():
    code = (
        "import sys, radzero; "
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'eager import'; "
        "radzero.create_model, radzero.RadZero, radzero.load_image; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(radzero.__file__).parents[1]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    from radzero.data.images import load_image

    assert radzero.create_model is create_model and radzero.RadZero is RadZero
    assert radzero.load_image is load_image
    assert all(hasattr(radzero, name) for name in radzero.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        radzero.nothing  # noqa: B018
    assert radzero.__version__ == importlib.metadata.version("radzero")
    assert (resources.files("radzero") / "py.typed").is_file()


def test_per_token_align_layers_match_a_diagonal_attention_mask():
    from radzero.model.align import AlignLayers
    from radzero.model.config import AlignConfig

    torch.manual_seed(0)
    layers = AlignLayers(AlignConfig(layers=2, window=0, include_cls=False), 32, 4, grid=3)
    tokens = torch.randn(2, 10, 32)
    fast = layers(tokens)
    x = tokens[:, 1:]
    for block in layers.blocks:
        x = block(x, torch.eye(9, dtype=torch.bool))
    torch.testing.assert_close(fast, x)
    # and a token's output depends on that token only
    moved = tokens.clone()
    moved[:, 5] += 1.0
    changed = (layers(moved) - fast).abs().sum(-1) > 0
    assert changed[:, 4].all() and changed.sum() == 2


def test_windowed_align_layers_keep_evidence_within_the_receptive_field():
    from radzero.model.align import AlignLayers
    from radzero.model.config import AlignConfig

    torch.manual_seed(0)
    layers = AlignLayers(AlignConfig(layers=2, window=1, include_cls=True), 32, 4, grid=5)
    tokens = torch.randn(1, 26, 32)
    moved = tokens.clone()
    moved[:, 1] += 1.0  # patch (0, 0)
    changed = ((layers(moved) - layers(tokens)).abs().sum(-1) > 0)[0, 1:].view(5, 5)
    # two 3x3 layers reach two patches away, and nothing leaks through CLS
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[:3, :3] = True
    assert torch.equal(changed, expected)


def test_position_scale_weights_the_position_signal():
    from radzero.model.align import AlignLayers
    from radzero.model.config import AlignConfig

    tokens = torch.randn(1, 10, 32)
    outputs = {}
    for name, cfg in {
        "none": AlignConfig(layers=1, position="none"),
        "zero": AlignConfig(layers=1, position="sincos", position_scale=0.0),
        "one": AlignConfig(layers=1, position="sincos"),
    }.items():
        torch.manual_seed(0)
        outputs[name] = AlignLayers(cfg, 32, 4, grid=3)(tokens)
    torch.testing.assert_close(outputs["zero"], outputs["none"])
    assert not torch.allclose(outputs["one"], outputs["none"])
