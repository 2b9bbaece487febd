"""Typed configs: bad fields fail at load with the file and the field's name."""

from __future__ import annotations

import pytest
from pydantic import Field

from limakit.core.config import Config, load_config
from limakit.core.errors import LimaError


class Inner(Config):
    rate: float = Field(0.5, description="a rate")


class Outer(Config):
    epochs: int = Field(15, description="passes")
    name: str = Field("x", description="a name")
    inner: Inner = Field(default_factory=Inner)


def test_yaml_then_overrides_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\ninner:\n  rate: 0.1\n")
    cfg = load_config(Outer, path, ["inner.rate=0.25", "name=run"])
    assert (cfg.epochs, cfg.name, cfg.inner.rate) == (3, "run", 0.25)
    assert load_config(Outer, None, []).epochs == 15


def test_unknown_field_names_file_field_and_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epoch: 3\n")
    with pytest.raises(
        LimaError, match=r"c.yaml: unknown field 'epoch' \(did you mean 'epochs'\?\)"
    ):
        load_config(Outer, path)
    with pytest.raises(LimaError, match=r"unknown field 'inner.zzz'; known fields: rate"):
        load_config(Outer, None, ["inner.zzz=1"])


def test_wrong_type_and_bad_files(tmp_path):
    with pytest.raises(LimaError, match=r"field 'epochs': .*\(got 'many'\)"):
        load_config(Outer, None, ["epochs=many"])
    with pytest.raises(LimaError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(LimaError, match="bad.yaml: not valid YAML"):
        load_config(Outer, bad)
    with pytest.raises(LimaError, match="must look like key=value"):
        load_config(Outer, None, ["epochs"])
