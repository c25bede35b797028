"""`radzero convert-authors` as a script, for `ray job submit --working-dir .` (docs/cloud.md)."""

from radzero.cli import run

run("convert-authors")
