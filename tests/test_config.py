"""Strict stage configs: nested dataclasses from dicts, YAML files and key=value overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from radzero.config import from_dict, load_config, parse_overrides


@dataclass
class Inner:
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"config lr must be > 0, got {self.lr}")


@dataclass
class Outer:
    name: str = "x"
    sizes: list[int] = field(default_factory=lambda: [224])
    inner: Inner = field(default_factory=Inner)
    extra: Inner | None = None


def test_nested_and_optional_dataclasses_are_built() -> None:
    config = from_dict(Outer, {"inner": {"lr": 0.1}, "extra": {"mode": "b"}})
    assert config.inner == Inner(lr=0.1) and config.extra == Inner(mode="b")


def test_unknown_keys_are_named_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"inner\.lrr.*did you mean 'lr'"):
        from_dict(Outer, {"inner": {"lrr": 1.0}})


def test_literal_and_range_errors() -> None:
    with pytest.raises(ValueError, match=r"inner\.mode must be one of \('a', 'b'\)"):
        from_dict(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ValueError, match="lr must be > 0"):
        from_dict(Outer, {"inner": {"lr": 0}})


def test_overrides_are_yaml_values_at_dotted_keys() -> None:
    assert parse_overrides(["inner.lr=0.5", "sizes=[224, 518]", "name=abc"]) == {
        "inner": {"lr": 0.5},
        "sizes": [224, 518],
        "name": "abc",
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["inner.lr"])


def test_load_config_layers_defaults_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: file\ninner:\n  mode: b\n")
    config = load_config(Outer, path, ["inner.lr=0.25"])
    assert config == Outer(name="file", inner=Inner(lr=0.25, mode="b"))
    path.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(Outer, path)
    with pytest.raises(ValueError, match=r"config file .*missing\.yaml does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping at the top level"):
        load_config(Outer, path)


@dataclass
class Typed:
    epochs: int = 10
    lr: float = 1e-3
    tags: list[str] = field(default_factory=list)
    table: dict[str, int] = field(default_factory=dict)
    flag: bool = False
    limit: int | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": "ten"}, r"epochs must be an integer, got 'ten' \(str\)"),
        ({"epochs": 2.5}, r"epochs must be an integer, got 2.5"),
        ({"epochs": True}, r"epochs must be an integer, got True"),
        ({"lr": "fast"}, r"lr must be a number, got 'fast'"),
        ({"tags": "a"}, r"tags must be a list of strings, got 'a'"),
        ({"tags": ["a", 3]}, r"tags\[1\] must be a string, got 3"),
        ({"table": {"a": "x"}}, r"table\.a must be an integer"),
        ({"flag": "yes"}, r"flag must be true or false, got 'yes'"),
        ({"limit": "many"}, r"limit must be an integer, got 'many'"),
    ],
)
def test_values_of_the_wrong_type_are_named_with_what_is_allowed(data, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_dict(Typed, data)


def test_lossless_conversions_and_null_are_accepted() -> None:
    config = from_dict(Typed, {"lr": 1, "limit": None, "tags": ("a",)})
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.limit is None and config.tags == ["a"]
    with pytest.raises(ValueError, match=r"inner must be a mapping of settings, got 3"):
        from_dict(Outer, {"inner": 3})


def test_a_jobs_file_gives_each_job_its_own_section(tmp_path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  a:\n    name: from-a\n  b:\n    inner: {lr: 0.5}\n")
    assert load_config(Outer, path, section="a") == Outer(name="from-a")
    assert load_config(Outer, path, ["name=cli"], section="b") == Outer("cli", inner=Inner(0.5))
    assert load_config(Outer, path, section="absent") == Outer()
    path.write_text("jobs:\n  a: [1]\n")
    with pytest.raises(ValueError, match=r"jobs\.a must be a mapping"):
        load_config(Outer, path, section="a")


def test_an_override_below_a_scalar_override_conflicts() -> None:
    with pytest.raises(ValueError, match=r"'inner\.lr=2' conflicts with an earlier one"):
        parse_overrides(["inner=1", "inner.lr=2"])
    assert parse_overrides(["inner.lr=", "name=null"]) == {"inner": {"lr": None}, "name": None}
