"""Flat YAML experiment configs: sections of plain keys, command-line overrides, validation.

A config file holds `task:` plus sections (model, data, loss, optim, schedule, ema, eval, run) of
scalar or list keys; `section.key=value` on the command line overrides one key (the value is read
as YAML, so `optim.lr=0.1`, `run.amp=bf16`, `data.scale=[0.5,1.0]` all work). Every key has a
declared Field; unknown keys, wrong types and bad choices raise ConfigError naming the key, the
file and the valid choices, before any training starts. No inheritance between files: what a run
did is readable in one place (and saved with the run and inside every checkpoint).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A mistake in a config file or an override: the message names the key and the file."""


@dataclass(frozen=True)
class Field:
    """One config key: its default, its kind and, for "choice", the allowed values.

    kinds: "int", "float", "bool", "str", "path", "choice", "floats" (list of numbers),
    "bool_or_path" (false / true / a file), "entries" (a list of mappings, e.g. extra data sets,
    whose keys the task checks). `optional` admits null.
    """

    default: Any
    kind: str
    choices: tuple = ()
    optional: bool = False
    help: str = ""


Schema = dict[str, dict[str, Field]]


def merge_schemas(*schemas: Schema) -> Schema:
    """Union of section -> key -> Field tables (a later table adds keys to a section)."""
    out: Schema = {}
    for schema in schemas:
        for section, fields in schema.items():
            out.setdefault(section, {}).update(fields)
    return out


def defaults(schema: Schema) -> dict[str, dict[str, Any]]:
    return {s: {k: copy.deepcopy(f.default) for k, f in fs.items()} for s, fs in schema.items()}


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed mapping of a YAML file; ConfigError for a missing file or a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, str, Any]:
    """'section.key=value' -> (section, key, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {text!r}: the key must be section.key (e.g. optim.lr)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # a plain string such as a path with odd characters
    return parts[0], parts[1], value


def resolve(
    raw: dict[str, Any], schema: Schema, source: str, overrides: list[str] = ()
) -> dict[str, Any]:
    """Validate `raw` (sections from `source`) against `schema`, apply overrides, fill defaults.

    Returns {section: {key: value}} with every declared key present and values coerced to
    their kinds (int -> float where a float is expected). Raises ConfigError on any mistake.
    """
    config = defaults(schema)
    for section, values in raw.items():
        if section == "task":
            continue
        if section not in schema:
            raise ConfigError(
                f"{source}: unknown section {section!r}; valid sections: {', '.join(schema)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys")
        for key, value in values.items():
            config[section][key] = check_value(schema, section, key, value, source)
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in schema:
            raise ConfigError(
                f"override {text!r}: unknown section {section!r}; valid: {', '.join(schema)}"
            )
        config[section][key] = check_value(schema, section, key, value, "command line")
    return config


def check_value(schema: Schema, section: str, key: str, value: Any, source: str) -> Any:
    """The value coerced to the Field's kind; ConfigError naming section.key and the source."""
    fields = schema[section]
    where = f"{source}: {section}.{key}"
    if key not in fields:
        raise ConfigError(
            f"{source}: unknown key {section}.{key}; valid keys of {section!r}: "
            f"{', '.join(sorted(fields))}"
        )
    field = fields[key]
    if value is None:
        if field.optional:
            return None
        raise ConfigError(f"{where} must not be null")
    try:
        return _coerce(field, value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where} = {value!r}: {err}") from None


# PyYAML (YAML 1.1) reads 1e-3 or 5e-4 -- no dot -- as a STRING, in files and overrides alike
_EXPONENT_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _number(value: Any, message: str) -> float:
    """int/float -> float; also the strings YAML leaves unparsed, like "1e-3"."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(message)
    return float(value)


def _coerce(field: Field, value: Any) -> Any:
    kind = field.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        return value
    if kind == "float":
        return _number(value, "expected a number")
    if kind in ("str", "path"):
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if kind == "choice":
        if value not in field.choices:
            raise ValueError(f"valid choices: {', '.join(map(str, field.choices))}")
        return value
    if kind == "floats":
        message = "expected a list of numbers, e.g. [0.5, 1.0]"
        if not isinstance(value, list | tuple):
            raise TypeError(message)
        return [_number(v, message) for v in value]
    if kind == "entries":
        message = "expected a list of mappings, e.g. [{format: crowdpose, json: a.json}]"
        if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
            raise TypeError(message)
        return [dict(v) for v in value]
    if kind == "bool_or_path":
        if not isinstance(value, bool | str):
            raise TypeError("expected true, false or a checkpoint path")
        return value
    raise AssertionError(f"unknown field kind {kind!r}")


def dump_config(config: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (section order kept), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    os.replace(tmp, path)
