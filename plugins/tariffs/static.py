"""Static tariff sources: inline `tou:` rules, `tou_file:` YAML rule files and `acnportal:` JSON
files, read at set-up (relative to the config dir) with errors naming the file, line and key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import voluptuous as vol

from hub.config import ConfigError, Secrets, load_yaml, validate_configuration
from plugins.tariffs.acnportal import rules_from_acnportal
from plugins.tariffs.tou import RULES_SCHEMA, TouRules

STATIC_SOURCES = ("tou", "tou_file", "acnportal")
MAX_FILE_BYTES = 1_000_000


def _path(config_dir: Path | None, name: str) -> Path:
    path = Path(name)
    if not path.is_absolute():
        path = (config_dir or Path.cwd()) / path
    return path


def _display(path: Path, config_dir: Path | None) -> str:
    if config_dir is not None and path.resolve().is_relative_to(config_dir.resolve()):
        return path.resolve().relative_to(config_dir.resolve()).as_posix()
    return str(path)


def load_tou_file(config_dir: Path | None, name: str) -> TouRules:
    """A YAML rules file (it may use !include and !secret like configuration.yaml)."""
    path = _path(config_dir, name)
    secrets = Secrets(config_dir) if config_dir is not None else None
    raw = load_yaml(path, secrets)  # raises ConfigError with the file and line
    where = _display(path, config_dir)
    if raw is None:
        raise ConfigError("the rules file is empty", where, 1)
    # validate_configuration maps every error to the file and line of its key, as for
    # configuration.yaml; the synthetic top key is cut from the dotted key afterwards.
    validated, errors = validate_configuration({"rules": raw}, {"rules": RULES_SCHEMA})
    if errors:
        first = errors[0]
        key = (first.key or "").removeprefix("rules").lstrip(".") or None
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(first.message + extra, first.file or where, first.line, key)
    return TouRules.from_config(validated["rules"])


def load_acnportal_file(config_dir: Path | None, name: str) -> TouRules:
    """An acnportal tariff JSON document, converted to TOU rules."""
    path = _path(config_dir, name)
    where = _display(path, config_dir)
    try:
        data = path.read_bytes()
    except OSError as err:
        missing = isinstance(err, FileNotFoundError)
        raise ConfigError("file not found" if missing else f"cannot read: {err}", where) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES} bytes", where)
    try:
        doc = json.loads(data)
    except ValueError as err:
        line = getattr(err, "lineno", None)
        raise ConfigError(f"not JSON: {getattr(err, 'msg', err)}", where, line) from None
    try:
        return TouRules.from_config(rules_from_acnportal(doc))
    except vol.Invalid as err:
        key = ".".join(str(p) for p in err.path) or None
        raise ConfigError(err.msg, where, None, key) from None


def load_rules(source: Mapping[str, Any], config_dir: Path | None) -> tuple[TouRules, str]:
    """The rules of a static source block and a description of where they came from."""
    if "tou" in source:
        return TouRules.from_config(source["tou"]), "tou"
    if "tou_file" in source:
        return load_tou_file(config_dir, source["tou_file"]), f"tou_file {source['tou_file']}"
    return load_acnportal_file(config_dir, source["acnportal"]), f"acnportal {source['acnportal']}"
