"""Params presets: partial ``params.yaml`` files applied as DVC experiments.

A preset (``params/gpu-reference.yaml``) has the shape of ``params.yaml`` but only
the keys it changes. It is applied with ``dvc exp run -S key=value ...`` rather than
by rewriting ``params.yaml`` ourselves, so DVC records the run as an experiment,
keeps the file's comments, and ``dvc exp show`` / ``dvc params diff`` list the change.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reranktune.io import InputError, read_yaml
from reranktune.params import SECTIONS, _format_error


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a preset; it must be a mapping of known sections to mappings."""
    path = Path(path)
    try:
        raw = read_yaml(path)
    except IsADirectoryError as exc:
        raise InputError(f"{path}: cannot read preset: {exc.strerror}") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: a preset is a non-empty mapping of params.yaml sections")
    for section, values in raw.items():
        if section not in SECTIONS:
            raise InputError(
                f"{path}: unknown section {section!r}; expected one of {sorted(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise InputError(
                f"{path}: {section}: expected a mapping of keys, got {type(values).__name__}"
            )
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_preset(
    preset: dict[str, Any], preset_path: str | Path, params_path: str | Path = "params.yaml"
) -> None:
    """Fail before DVC runs anything if the preset over ``params_path`` is not valid params."""
    params_path = Path(params_path)
    base = read_yaml(params_path) if params_path.exists() else {}
    for section, values in preset.items():
        merged = _merge((base or {}).get(section) or {}, values)
        try:
            SECTIONS[section].model_validate(merged)
        except ValidationError as exc:
            raise InputError(_format_error(Path(preset_path), section, exc)) from None


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_KEYWORDS = {"true", "false", "null", "nan", "inf"}


def _hydra_value(value: Any) -> str:
    """A value in the override grammar that ``dvc exp run -S`` parses (Hydra's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"preset value {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _KEYWORDS:
            return value
        # Single-quoted; Hydra unescapes only backslashes that precede a quote.
        quoted = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, quoted) + "'"
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    raise InputError(f"preset value {value!r}: only scalars and lists can be set with -S")


def set_args(preset: dict[str, Any], prefix: str = "") -> list[str]:
    """``["-S", "++finetune.learning_rate=3e-06", ...]`` for every leaf key of the preset.

    ``++`` sets the key whether or not params.yaml already lists it (a key left at its
    default there, such as ``retrieval.embedding.trust_remote_code``, is absent from the file).
    """
    args: list[str] = []
    for key, value in preset.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            args += set_args(value, prefix=f"{name}.")
        else:
            args += ["-S", f"++{name}={_hydra_value(value)}"]
    return args
