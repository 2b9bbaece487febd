"""Whether a JSON value has the shape a type names: TypedDicts, lists, ``dict[str, ...]``,
unions, literals and plain types, checked all the way down.

A file written by hand or cut off should fail where it is read, with the file and the field
named, not as a ``KeyError`` three functions later. :func:`read_checked` reads a JSON file and
checks it against a type; fields a TypedDict does not name are left alone.

>>> from typing_extensions import TypedDict
>>> class Side(TypedDict):
...     path: str
...     model: str
>>> check_shape({"path": "lima.jsonl", "model": 7}, Side)
"field 'model' must be a string, got 7"
>>> check_shape({"sides": [{"path": "a.jsonl"}]}, dict[str, list[Side]])
"field 'sides[0].model' is missing"
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterable
from typing import Any, Literal, Union, get_args, get_origin

from typing_extensions import get_type_hints, is_typeddict

from limakit.core.errors import LimaError
from limakit.core.files import read_json


def _words(tp: Any) -> str:
    """What a value of type ``tp`` is, in the words of an error message."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_words(t) for t in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict or is_typeddict(tp):
        return "an object"
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, "null" if tp is type(None) else str(tp))


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of the kind ``tp`` names, at the top level."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, t) for t in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if origin is list:
        return isinstance(value, list)
    if origin is dict or is_typeddict(tp):
        return isinstance(value, dict)
    if tp is float:  # JSON writes 2.0 as 2 no more than Python does, but a hand may
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _first(problems: Iterable[str | None]) -> str | None:
    return next((p for p in problems if p is not None), None)


def check_shape(value: Any, tp: Any, field: str = "") -> str | None:
    """The first way ``value`` departs from the type ``tp``, in words; None when it fits.

    A TypedDict's required keys must be there (a missing one is named before any wrong one);
    a TypedDict whose module uses ``from __future__ import annotations`` cannot tell its
    ``NotRequired`` keys, so declare such types in a module without it.
    """
    name = f"field {field!r}" if field else "the file"
    if not _fits(value, tp):
        return f"{name} must be {_words(tp)}, got {_shown(value)}"
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        problems = [check_shape(value, t, field) for t in get_args(tp) if _fits(value, t)]
        return None if None in problems else problems[0]
    if origin is list:
        (item,) = get_args(tp)
        return _first(check_shape(v, item, f"{field}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _, item = get_args(tp)
        return _first(check_shape(v, item, _join(field, str(k))) for k, v in value.items())
    if is_typeddict(tp):
        hints = get_type_hints(tp)
        missing = [k for k in hints if k in tp.__required_keys__ and k not in value]
        if missing:
            return f"field {_join(field, missing[0])!r} is missing"
        return _first(check_shape(value[k], hints[k], _join(field, k)) for k in hints if k in value)
    return None


def read_checked(path: str | os.PathLike, tp: Any, what: str) -> Any:
    """The JSON document at ``path``, checked against ``tp``: a :class:`LimaError` naming the
    file and the first field that is missing or of the wrong kind. ``what`` names the file's
    kind, as :func:`~limakit.core.files.read_json` takes it (``"summary of lima judge"``)."""
    return checked(read_json(path, what), tp, path, what)


def checked(data: Any, tp: Any, path: str | os.PathLike, what: str) -> Any:
    """``data`` read from ``path``, once it fits ``tp``; else a :class:`LimaError` naming both.

    >>> checked([], dict[str, int], "summary.json", "summary of lima judge")
    Traceback (most recent call last):
    ...
    limakit.core.errors.LimaError: summary.json: the file must be an object, got [] (expected a summary of lima judge)
    """
    problem = check_shape(data, tp)
    if problem is not None:
        raise LimaError(f"{path}: {problem} (expected a {what})")
    return data
