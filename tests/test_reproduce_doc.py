"""docs/reproduce.md against the code: its commands and options exist, its numbers are published."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from radzero import cli
from radzero.eval import results

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproduce.md"
# The table columns of docs/reproduce.md section 4 -> the paper's model rows.
MODELS = {"RadZero": 3, "RadZero (224px)": 4}


def _commands() -> list[list[str]]:
    """Every `radzero ...` or `python jobs/<command>.py ...` invocation in the doc's bash blocks,
    as (command, arguments), continuation lines joined and comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):  # the first command word (later: arguments)
                if word == "radzero" and i + 1 < len(words):
                    found.append(words[i + 1 :])
                    break
                if word.startswith("jobs/") and word.endswith(".py"):
                    found.append([word[len("jobs/") : -len(".py")], *words[i + 1 :]])
                    break
    return found


def test_the_doc_names_every_step() -> None:
    named = {words[0] for words in _commands()}
    assert {"convert-authors", "evaluate", "results", "serve", "train"} <= named


@pytest.mark.parametrize("words", _commands(), ids=lambda words: " ".join(words[:3]))
def test_every_command_and_option_exists(words: list[str], capsys) -> None:
    command, arguments = words[0], words[1:]
    assert command in cli.COMMANDS
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    usage = capsys.readouterr().out
    for option in (a.partition("=")[0] for a in arguments if a.startswith("--")):
        assert re.search(rf"(^|[\s\[]){re.escape(option)}\b", usage), f"{command} {option}"


def test_expected_numbers_are_the_published_ones() -> None:
    published = results.paper()
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in DOC.read_text().splitlines()
        if re.match(r"\| `[^`]+` \|", line)
    ]
    columns = {row[0].strip("`"): row for row in rows}
    assert set(columns) == set(results.COLUMNS)
    for column, row in columns.items():
        assert row[1] == results.COLUMNS[column][0]
        assert row[2].split()[0].strip("`") == ".".join(results.COLUMNS[column][1])
        for model, cell in MODELS.items():
            assert float(row[cell]) == published[model][column], (column, model)
