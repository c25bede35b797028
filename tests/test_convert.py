"""The authors' released checkpoint format -> RadZero: numbers by the equations, every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from radzero import cli, registry, storage
from radzero.model import RadZero
from radzero.model.convert import CheckpointError, convert_authors, from_authors
from tests.authors_checkpoint import expected_outputs, write_authors_folder

PHRASES = ["left pleural effusion", "there is no pneumothorax", "cardiomegaly", "small nodules"]


@pytest.fixture(scope="module")
def authors(tmp_path_factory) -> Path:
    return write_authors_folder(tmp_path_factory.mktemp("authors") / "RadZero")


@pytest.fixture(scope="module")
def converted(authors: Path, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("converted") / "radzero-authors"
    convert_authors(authors, target)
    return target


def _gray(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A radiograph-like 8-bit image in [0, 1], not square (their maps stretch to it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    smooth = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    return np.rint(np.clip(smooth + 0.1 * rng.standard_normal((height, width)), 0, 1) * 255) / 255


@pytest.mark.parametrize("shape", [(45, 61), (120, 90)])
def test_logits_and_maps_equal_the_equations(authors: Path, converted: Path, shape) -> None:
    model = RadZero.from_pretrained(converted).eval()
    gray = _gray(*shape)
    logits_expected, maps_expected = expected_outputs(authors, gray, PHRASES)
    pixels = model.preprocess(gray)[None]
    logits, _ = model.score(model.encode_image(pixels), model.encode_text(PHRASES))
    maps = model.similarity_maps(PHRASES, images=pixels, size=shape)
    assert logits_expected.abs().max() > 1  # the numbers are not all near zero
    torch.testing.assert_close(logits[0], logits_expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0], maps_expected, atol=1e-5, rtol=0)
    probabilities = model.classify(PHRASES, ["{}"], images=pixels)[0]
    torch.testing.assert_close(probabilities, logits_expected.sigmoid(), atol=1e-5, rtol=0)


def test_converted_folder_is_self_contained_and_names_its_source(
    authors: Path, converted: Path
) -> None:
    meta = json.loads((converted / "config.json").read_text())
    assert meta["model"]["vision"]["checkpoint"] == "./backbone"
    assert meta["model"]["vision"]["position_interpolation"] == "scale_factor"
    assert meta["model"]["text"] == {"checkpoint": "./text", "trainable": False, "max_length": 38}
    assert meta["preprocess"]["resize"] == "bicubic-8bit"
    assert meta["preprocess"]["mean"] == [0.5, 0.45, 0.4]
    assert (converted / "backbone" / "model.safetensors").is_file()
    assert (converted / "text" / "modules.json").is_file()
    card = json.loads((converted / "card.json").read_text())
    assert card["source"] == str(authors) and card["format"] == "CxrAlignModel"
    assert card["tensors"] == len(load_file(authors / "model.safetensors"))
    assert card["training_only_options"]["multi_positive"] is True
    # moved elsewhere, it still loads: nothing points back at the source or the work folder
    moved = converted.parent / "moved"
    converted.rename(moved)
    try:
        model = RadZero.from_pretrained(moved)
        assert model.backbone.model.config.hidden_size == 32
    finally:
        moved.rename(converted)


def test_position_interpolation_is_the_4_39_one(converted: Path) -> None:
    """Turned off, the same weights give other numbers: the option is what matches them."""
    model = RadZero.from_pretrained(converted).eval()
    pixels = model.preprocess(_gray(40, 40))[None]
    tokens = model.backbone_tokens(pixels)
    embeddings = model.backbone.model.embeddings
    del embeddings.interpolate_pos_encoding  # back to transformers 5's size=(h, w)
    assert (model.backbone_tokens(pixels) - tokens).abs().max() > 1e-3


def test_from_authors_converts_once_into_its_cache(authors: Path, tmp_path: Path) -> None:
    first = from_authors(authors, cache=tmp_path)
    (folder,) = tmp_path.iterdir()
    stamp = (folder / "config.json").stat().st_mtime_ns
    second = from_authors(authors, cache=tmp_path)
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_transformers_5_attention_names_convert_to_the_same_model(
    converted: Path, tmp_path: Path
) -> None:
    folder = write_authors_folder(tmp_path / "v5", names="5.x")
    convert_authors(folder, tmp_path / "out")
    a = RadZero.from_pretrained(converted).state_dict()
    b = RadZero.from_pretrained(tmp_path / "out").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _edit_tensors(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


REFUSALS = {
    "unexpected tensor": (
        lambda f: _edit_tensors(f, lambda t: t.update(extra=torch.zeros(2, dtype=torch.bfloat16))),
        "unexpected tensors: ['extra']",
    ),
    "unexpected loss tensor": (
        lambda f: _edit_tensors(
            f,
            lambda t: t.update(
                {"loss_fns.RadZeroLoss.layer_norm.scale": torch.ones(1, dtype=torch.bfloat16)}
            ),
        ),
        "unexpected tensors: ['loss_fns.RadZeroLoss.layer_norm.scale']",
    ),
    "missing vision tensor": (
        lambda f: _edit_tensors(
            f, lambda t: t.pop("vision_model.encoder.layer.1.attention.attention.key.weight")
        ),
        "1 missing ['encoder.layer.1.attention.k_proj.weight']",
    ),
    "missing text tensor": (
        lambda f: _edit_tensors(f, lambda t: t.pop("text_model.encoder.layer.0.output.dense.bias")),
        "text_model does not match its config: 1 missing",
    ),
    "missing align tensor": (
        lambda f: _edit_tensors(
            f, lambda t: t.pop("align_transformer.transformer_layers.layer.1.layer_scale2.lambda1")
        ),
        "lacks layer_scale2.lambda1",
    ),
    "missing temperature": (
        lambda f: _edit_tensors(f, lambda t: t.pop("loss_fns.RadZeroLoss.loss_temperature")),
        "lack loss_fns.RadZeroLoss.loss_temperature",
    ),
    "wrong shape": (
        lambda f: _edit_tensors(
            f,
            lambda t: t.update(
                {"loss_fns.RadZeroLoss.layer_norm.weight": torch.ones(16, dtype=torch.bfloat16)}
            ),
        ),
        "layer_norm.weight has shape (16,), expected (32,)",
    ),
    "dot similarity": (
        lambda f: _edit_config(f, lambda c: c["loss"]["RadZeroLoss"].update(sim_op="dot")),
        "loss.RadZeroLoss.sim_op='dot' has no equivalent",
    ),
    "attention temperature": (
        lambda f: _edit_config(f, lambda c: c["loss"]["RadZeroLoss"].update(attn_temperature=0.1)),
        "attn_temperature=0.1 has no equivalent",
    ),
    "text projection": (
        lambda f: _edit_config(f, lambda c: c["text_config"].update(use_text_projection=True)),
        "use_text_projection=true has no equivalent",
    ),
    "swiglu align": (
        lambda f: _edit_config(
            f, lambda c: c["align_transformer_config"].update(use_swiglu_ffn=True)
        ),
        "align_transformer_config.use_swiglu_ffn=True has no equivalent",
    ),
    "align layer count": (
        lambda f: _edit_config(
            f, lambda c: c["align_transformer_config"].update(num_hidden_layers=3)
        ),
        "has 3 layers but the weights hold layers [0, 1]",
    ),
    "unknown config key": (
        lambda f: _edit_config(f, lambda c: c.update(logit_bias=True)),
        "keys this converter does not know: ['logit_bias']",
    ),
    "another architecture": (
        lambda f: _edit_config(f, lambda c: c.update(architectures=["CLIPModel"])),
        "architectures is ['CLIPModel']",
    ),
    "another logits type": (
        lambda f: _edit_config(f, lambda c: c.update(compute_logits_type="clip")),
        "compute_logits_type 'clip' has no equivalent",
    ),
    "size mismatch": (
        lambda f: _edit_config(f, lambda c: c["vision_config"].update(img_size=32)),
        "must name one square side",
    ),
    "no tokenizer": (
        lambda f: [(f / n).unlink() for n in ("tokenizer.json", "vocab.txt")],
        "has no tokenizer files",
    ),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is missing"),
    "corrupt weights": (
        lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64),
        "corrupt or unreadable",
    ),
    "not a checkpoint": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refuses_what_it_does_not_understand(case: str, tmp_path: Path) -> None:
    folder = write_authors_folder(tmp_path / "authors")
    edit, message = REFUSALS[case]
    edit(folder)
    target = tmp_path / "out"
    with pytest.raises(CheckpointError) as caught:
        convert_authors(folder, target)
    assert message in str(caught.value)
    assert not target.exists()  # nothing half-written


def _same_weights(a: RadZero, b: RadZero) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_command_converts_and_registers_name_at_authors(
    authors: Path, converted: Path, tmp_path, capsys
) -> None:
    root = tmp_path / "registry"
    argv = [str(authors), str(tmp_path / "out"), "--register", "radzero", "--registry", str(root)]
    assert cli.main(["convert-authors", *argv]) == 0
    printed = capsys.readouterr().out
    assert "registered radzero@1 (radzero@authors)" in printed
    loaded = RadZero.from_pretrained("radzero@authors", registry=str(root))
    assert _same_weights(loaded, RadZero.from_pretrained(converted))
    card = registry.read_card("radzero@authors", root=str(root))
    assert card["source"] == str(authors) and card["version"] == 1
    # the registered version carries the bundled folders: the converted folder can go
    shutil.rmtree(tmp_path / "out")
    assert _same_weights(RadZero.from_pretrained("radzero@1", registry=str(root)), loaded)


def test_the_command_reports_a_refusal_and_writes_nothing(tmp_path, capsys) -> None:
    folder = write_authors_folder(tmp_path / "authors")
    _edit_config(folder, lambda c: c["loss"]["RadZeroLoss"].update(sim_op="dot"))
    assert cli.main(["convert-authors", str(folder), str(tmp_path / "out")]) == 1
    assert "sim_op='dot' has no equivalent here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_occupied_target_is_refused_and_kept(authors: Path, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already holds files"):
        convert_authors(authors, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_on_s3_converted_registered_and_loaded_offline(
    authors: Path, converted: Path, s3_bucket: str, tmp_path, monkeypatch
) -> None:
    """Converted straight to S3, then registered in an S3 registry: the bundled folders are
    copied once into the local cache, and the model equals the local one."""
    monkeypatch.setenv("RADZERO_CACHE", str(tmp_path / "cache"))
    target = f"s3://{s3_bucket}/models/authors"
    card = convert_authors(authors, target)
    assert storage.exists(f"{target}/backbone/model.safetensors")
    on_s3 = RadZero.from_pretrained(target)
    assert _same_weights(on_s3, RadZero.from_pretrained(converted))
    copies = sorted(p.name for p in (tmp_path / "cache").rglob(".radzero-copied"))
    assert len(copies) == 2  # the backbone and the text encoder
    root = f"s3://{s3_bucket}/registry"
    assert registry.register(target, "radzero", card, root=root, aliases=("authors",)) == 1
    assert _same_weights(RadZero.from_pretrained("radzero@authors", registry=root), on_s3)


def test_a_feature_cache_of_the_4_39_positions_has_its_own_name() -> None:
    from radzero.model.config import VisionConfig
    from radzero.platform.features import backbone_name

    hf = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 4}
    plain = backbone_name(VisionConfig(hf_config=hf))
    legacy = backbone_name(VisionConfig(hf_config=hf, position_interpolation="scale_factor"))
    assert legacy == plain + "-positions-scale_factor"
    assert backbone_name(VisionConfig(checkpoint="org/dinov2")) == "org--dinov2"
