"""The model registry on a local folder and on a real local S3 endpoint: versions, aliases,
references, concurrent registrations and crashed ones."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import radzero
from radzero import registry, storage
from radzero.model import RadZero, create_model
from radzero.model.radzero import WEIGHTS_NAME

INCOMPLETE = r"version 2 of cxr is incomplete \(a registration crashed or is in progress\)"


@pytest.fixture(autouse=True)
def no_registry_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(registry.ENV_VAR, raising=False)


@pytest.fixture(params=["folder", "s3"])
def root(request, tmp_path) -> str:
    """An empty registry root: a local folder, or a prefix in a fresh bucket on local S3."""
    if request.param == "folder":
        return str(tmp_path / "registry")
    return f"s3://{request.getfixturevalue('s3_bucket')}/registry"


@pytest.fixture
def models(tiny_config, tmp_path) -> dict[str, tuple[RadZero, str]]:
    """Two tiny models with different weights, each saved: name -> (model, folder)."""
    torch.manual_seed(0)
    first = create_model(tiny_config).eval()
    second = create_model(tiny_config).eval()
    with torch.no_grad():
        for p in second.align.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return {
        name: (model, model.save_pretrained(str(tmp_path / name)))
        for name, model in (("first", first), ("second", second))
    }


def weights_equal(a: RadZero, b: RadZero) -> bool:
    sa, sb = a.trainable_state_dict(), b.trainable_state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_register_resolve_list_and_load(root, models, monkeypatch):
    first, first_dir = models["first"]
    second, second_dir = models["second"]
    card = {"metrics": {"auc": 0.91}, "lineage": {"run": "r1"}, "preprocessing": {"size": 64}}
    assert registry.register(first_dir, "cxr", card, root=root, aliases=("best",)) == 1
    assert registry.register(second_dir, "cxr", {"metrics": {"auc": 0.85}}, root=root) == 2

    version_uri = storage.join(root, "models", "cxr", "2")
    assert registry.resolve("cxr", root) == registry.resolve("cxr@latest", root) == version_uri
    assert registry.resolve("cxr@1", root) == registry.resolve("cxr@best", root)
    assert registry.resolve("cxr@1", root).endswith("/models/cxr/1")
    assert sorted(Path(uri).name for uri in storage.list_files(version_uri)) == sorted(
        ["_CLAIM", "card.json", "config.json", WEIGHTS_NAME, "_REGISTERED"]
    )
    assert registry.names(root) == ["cxr"]

    listed = registry.list("cxr", root)
    assert [(v["version"], v["aliases"]) for v in listed] == [(1, ["best"]), (2, ["latest"])]
    assert [v["uri"] for v in listed] == [registry.resolve("cxr@1", root), version_uri]
    stored = listed[0]["card"]
    assert stored.pop("registered_at").endswith("+00:00")
    assert stored == {**card, "name": "cxr", "version": 1}
    assert listed[1]["card"]["metrics"] == {"auc": 0.85}
    assert registry.read_card("cxr@best", root)["lineage"] == {"run": "r1"}

    monkeypatch.setenv(registry.ENV_VAR, root)
    best = RadZero.from_pretrained("cxr@best").eval()
    assert weights_equal(best, first) and not weights_equal(best, second)
    monkeypatch.delenv(registry.ENV_VAR)
    latest = RadZero.from_pretrained("cxr", registry=root).eval()
    assert weights_equal(latest, second)
    pixels = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        latest.classify(["effusion"], images=pixels),
        second.classify(["effusion"], images=pixels),
        rtol=0,
        atol=0,
    )


def test_aliases_move_and_bad_ones_are_refused(root, models):
    _, model_dir = models["first"]
    registry.register(model_dir, "cxr", {}, root=root, aliases=("best", "candidate"))
    registry.register(model_dir, "cxr", {}, root=root)
    registry.set_alias("cxr", "best", 2, root=root)
    assert registry.resolve("cxr@best", root).endswith("/cxr/2")
    assert registry.resolve("cxr@candidate", root).endswith("/cxr/1")
    assert [v["aliases"] for v in registry.list("cxr", root)] == [
        ["candidate"],
        ["best", "latest"],
    ]
    with pytest.raises(ValueError, match="has no version 7; versions: 1, 2"):
        registry.set_alias("cxr", "best", 7, root=root)
    with pytest.raises(ValueError, match="'latest' cannot be set"):
        registry.set_alias("cxr", "latest", 1, root=root)
    for bad in ("3", "a/b", "-x", ""):
        with pytest.raises(ValueError, match="invalid alias"):
            registry.set_alias("cxr", bad, 1, root=root)
    with pytest.raises(ValueError, match="'latest' cannot be set"):
        registry.register(model_dir, "cxr", {}, root=root, aliases=("latest",))
    with pytest.raises(TypeError, match=r"e\.g\. \('best',\)"):
        registry.register(model_dir, "cxr", {}, root=root, aliases="best")
    assert registry.resolve("cxr@best", root).endswith("/cxr/2")  # left as it was
    assert [v["version"] for v in registry.list("cxr", root)] == [1, 2]  # nothing claimed


def test_bad_registrations_are_refused_before_claiming_a_version(root, models, tmp_path):
    _, model_dir = models["first"]
    with pytest.raises(ValueError, match=r"must not hold \['version'\]"):
        registry.register(model_dir, "cxr", {"version": 9}, root=root)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        registry.register(model_dir, "cxr", {"when": object()}, root=root)
    with pytest.raises(ValueError, match="invalid model name"):
        registry.register(model_dir, "../cxr", {}, root=root)
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        registry.register(tmp_path / "empty", "cxr", {}, root=root)
    assert storage.list_files(root) == []
    assert registry.register(model_dir, "cxr", {}, root=root) == 1


def test_concurrent_registrations_in_threads_get_distinct_versions(root, models):
    _, model_dir = models["first"]
    start = threading.Barrier(4)
    versions: list[int] = []

    def register(worker: int) -> None:
        start.wait()
        versions.append(registry.register(model_dir, "cxr", {"worker": worker}, root=root))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [1, 2, 3, 4]
    listed = registry.list("cxr", root)
    assert [v["version"] for v in listed] == [1, 2, 3, 4]  # all complete
    assert sorted(v["card"]["worker"] for v in listed) == [0, 1, 2, 3]


def test_concurrent_registrations_in_processes_get_distinct_versions(models, tmp_path):
    _, model_dir = models["first"]
    root, barrier = tmp_path / "registry", tmp_path / "ready"
    barrier.mkdir()
    code = (
        "import pathlib, sys, time\n"
        "from radzero import registry\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "model_dir, root, barrier, me = sys.argv[1:]\n"
        "pathlib.Path(barrier, me).touch()\n"
        "while len(list(pathlib.Path(barrier).iterdir())) < 2:\n"
        "    time.sleep(0.01)\n"
        "for _ in range(2):\n"
        "    print(registry.register(model_dir, 'cxr', {'by': me}, root=root))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(radzero.__file__).parents[1]))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, model_dir, str(root), str(barrier), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0]
    assert sorted(int(line) for out in outputs for line in out.split()) == [1, 2, 3, 4]
    assert [v["version"] for v in registry.list("cxr", root)] == [1, 2, 3, 4]


def test_a_stale_listing_never_overwrites_a_version(root, models, monkeypatch):
    """The claim itself (mkdir, or a conditional PutObject that moto's server honours) refuses a
    taken number, even when the listing that chose it missed the version."""
    (_, first_dir), (_, second_dir) = models["first"], models["second"]
    registry.register(first_dir, "cxr", {"n": 1}, root=root)
    registry.register(first_dir, "cxr", {"n": 2}, root=root)
    monkeypatch.setattr(
        registry, "_read_versions", lambda base, name: registry._Versions((), (), ())
    )
    assert registry.register(second_dir, "cxr", {"n": 3}, root=root) == 3
    monkeypatch.undo()
    assert [v["card"]["n"] for v in registry.list("cxr", root)] == [1, 2, 3]
    first = RadZero.from_pretrained("cxr@1", registry=root)
    assert weights_equal(first, models["first"][0])


def test_a_crashed_registration_is_never_resolved_nor_reused(root, models, monkeypatch):
    _, model_dir = models["first"]
    registry.register(model_dir, "cxr", {}, root=root)

    def crash(version_uri: str, registered_at: str) -> None:
        raise RuntimeError("killed before the marker")

    monkeypatch.setattr(registry, "_write_marker", crash)
    with pytest.raises(RuntimeError, match="killed"):
        registry.register(model_dir, "cxr", {}, root=root, aliases=("best",))
    monkeypatch.undo()
    partial = storage.join(root, "models", "cxr", "2")
    assert storage.exists(storage.join(partial, "card.json"))  # written, but no marker
    assert registry.resolve("cxr", root).endswith("/cxr/1")
    assert registry.resolve("cxr@latest", root).endswith("/cxr/1")
    with pytest.raises(ValueError, match=INCOMPLETE):
        registry.resolve("cxr@2", root)
    with pytest.raises(ValueError, match=INCOMPLETE):
        RadZero.from_pretrained("cxr@2", registry=root)
    with pytest.raises(ValueError, match=INCOMPLETE):
        registry.set_alias("cxr", "best", 2, root=root)
    with pytest.raises(ValueError, match="no alias 'best'"):  # aliases come after the marker
        registry.resolve("cxr@best", root)
    assert [v["version"] for v in registry.list("cxr", root)] == [1]
    assert registry.register(model_dir, "cxr", {}, root=root) == 3
    assert registry.resolve("cxr", root).endswith("/cxr/3")
    with pytest.raises(ValueError, match=r"versions: 1, 3 \(incomplete: 2\)"):
        registry.resolve("cxr@4", root)


def test_unknown_names_aliases_and_versions_list_what_exists(root, models):
    _, model_dir = models["first"]
    with pytest.raises(ValueError, match=r"no model 'cxr' in the registry .*; it holds: nothing"):
        registry.resolve("cxr", root)
    registry.register(model_dir, "cxr", {}, root=root, aliases=("best",))
    registry.register(model_dir, "chest", {}, root=root)
    with pytest.raises(ValueError, match=r"no model 'lung' .*; it holds: chest, cxr$"):
        registry.resolve("lung@best", root)
    with pytest.raises(ValueError, match=r"it holds: chest, cxr$"):
        registry.list("lung", root)
    with pytest.raises(ValueError, match=r"has no version 7; versions: 1; aliases: best, latest$"):
        registry.resolve("cxr@7", root)
    with pytest.raises(ValueError, match=r"no alias 'worst'; versions: 1; aliases: best, latest$"):
        registry.read_card("cxr@worst", root)
    with pytest.raises(ValueError, match="not a registry reference"):
        registry.resolve("cxr@best@1", root)
    assert registry.names(root) == ["chest", "cxr"]


def test_without_a_root_the_error_says_how_to_give_one(models):
    with pytest.raises(ValueError, match="pass its root or set RADZERO_REGISTRY"):
        registry.names()
    with pytest.raises(ValueError, match="reference 'cxr@best': pass its root or set RADZERO_"):
        RadZero.from_pretrained("cxr@best")
    with pytest.raises(ValueError, match="pass its root or set RADZERO_REGISTRY"):
        registry.register(models["first"][1], "cxr", {})


def test_references_are_told_apart_from_paths(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the models fixture saved "first" and "second"
    for text in ("cxr", "cxr@best", "cxr@3", "radzero-tiny", "model_v1.2@prod-eu"):
        assert registry.is_reference(text), text
    for text in ("first", "a/b", "s3://bucket/model", "./cxr", "", "@best", "cxr@", "a@b@c"):
        assert not registry.is_reference(text), text
    assert weights_equal(RadZero.from_pretrained("first"), models["first"][0])  # a folder
