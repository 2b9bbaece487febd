"""Typed configs: pydantic models loaded from YAML, with ``key.sub=value`` overrides.

Every stage's config subclasses :class:`Config`. Unknown fields and wrong types fail at load time
with the field's dotted name and the file, never deep inside a run::

    cfg = load_config(TrainConfig, "configs/lima-7b.yaml", ["lr=2e-5", "epochs=3"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from limakit.core.errors import LimaError
from limakit.core.files import atomic_write


class Config(BaseModel):
    """Base of all configs: unknown fields are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved config (defaults included) atomically, so a run records what it used."""
        with atomic_write(path) as f:
            f.write(self.to_yaml())


C = TypeVar("C", bound=Config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-5"`` -> ``(["optim", "lr"], 1e-05)``; the value is parsed as YAML."""
    if "=" not in text:
        raise LimaError(f"override {text!r} must look like key=value (e.g. epochs=3)")
    key, value = text.split("=", 1)
    if not key.strip():
        raise LimaError(f"override {text!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def read_yaml_mapping(path: Path) -> dict:
    """A YAML config file's mapping (empty for an empty file); anything else is a LimaError."""
    if not path.exists():
        raise LimaError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise LimaError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LimaError(f"{path}: a config must be a mapping of field: value")
    return data


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` overrides to a config mapping in place (and return it)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if isinstance(node.get(k), list):  # a list field given sub-keys: {files: [...], ...}
                node[k] = {"files": node[k]}
            if node.get(k) is None:
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                raise LimaError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return data


def load_config(
    cls: type[C], path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> C:
    """Load ``cls`` from an optional YAML file, then apply ``key=value`` overrides in order."""
    data = read_yaml_mapping(Path(path)) if path is not None else {}
    where = str(path) if path is not None else "config"
    apply_overrides(data, overrides)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise LimaError(format_validation_error(where, e, cls)) from None


def _section(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The config class that holds the field at ``path`` (nested sections followed by name)."""
    for key in path:
        field = cls.model_fields.get(str(key))
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        cls = sub
    return cls


def format_validation_error(
    where: str, e: ValidationError, cls: type[BaseModel] | None = None
) -> str:
    import difflib

    lines = []
    for err in e.errors():
        field = ".".join(str(x) for x in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            msg = f"{where}: unknown field {field!r}"
            section = _section(cls, tuple(err["loc"][:-1])) if cls is not None else None
            if section is not None:
                known = list(section.model_fields)
                close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
                msg += (
                    f" (did you mean {close[0]!r}?)"
                    if close
                    else f"; known fields: {', '.join(known)}"
                )
            lines.append(msg)
        else:
            lines.append(f"{where}: field {field!r}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)
