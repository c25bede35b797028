"""The RadZero module: shapes, frozen parts, configs, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from radzero.model import RadZero, RadZeroConfig, create_model, list_models, resolve_preprocess
from radzero.model.radzero import WEIGHTS_NAME


def build(config: dict) -> RadZero:
    torch.manual_seed(0)
    return create_model(config).eval()


def test_inference_api_shapes_and_ranges(tiny_config):
    model = build(tiny_config)
    pixels = torch.randn(2, 3, 64, 64)
    assert model.encode_image(pixels).shape == (2, 16, 64)  # 4x4 patches, CLS left out
    assert model.encode_text(["There is effusion", "There is no effusion"]).shape == (2, 64)
    probs = model.classify(pixels, ["effusion", "nodule", "mass"])
    assert probs.shape == (2, 3) and ((probs > 0) & (probs < 1)).all()
    maps = model.similarity_maps(pixels, ["effusion", "left lung"])
    assert maps.shape == (2, 2, 64, 64) and maps.min() >= 0 and maps.max() <= 1


def test_maps_are_the_upsampled_sigmoid_of_the_patch_scores(tiny_config):
    model = build(tiny_config)
    pixels = torch.randn(1, 3, 64, 64)
    _, scores = model.score(
        model.encode_image(pixels), model.encode_text(["nodule"]), return_scores=True
    )
    coarse = model.similarity_maps(pixels, ["nodule"], size=(4, 4))
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
    logits = model(["a", "b", "c"], pixels=torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    grads = [p.grad for p in model.align.parameters()]
    assert logits.shape == (2, 3) and all(g is not None for g in grads)


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
        loaded.classify(pixels, ["effusion"]), model.classify(pixels, ["effusion"]), rtol=0, atol=0
    )
    torch.testing.assert_close(
        loaded.similarity_maps(pixels, ["nodule"]),
        model.similarity_maps(pixels, ["nodule"]),
        rtol=0,
        atol=0,
    )


def test_checkpoint_holds_only_trainable_weights(tiny_config, tmp_path):
    model = build(tiny_config)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

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
