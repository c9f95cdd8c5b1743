"""Minimal valid instances of the OCPP JSON schemas the `ocpp` library ships, for conformance
tests: required properties only, first enum values, a fixed timestamp, minimum numbers.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from typing import Any

from plugins.ocpp.rpc import Err, Version, _schema_file

TIMESTAMP = "2026-03-02T07:00:00Z"  # every date-time: fixed and timezone-aware
URI = "http://127.0.0.1/evhub"
TEXT = "evhub"  # every free string, cut to the schema's maxLength
EXTRA_PROPERTY = "evhubUnexpected"  # a property no OCPP schema defines


@functools.cache
def _load(version: Version, action: str, response: bool) -> dict[str, Any]:
    with open(_schema_file(version, action, response), encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


def schema(version: Version, action: str, *, response: bool = False) -> dict[str, Any]:
    """The schema of a request (or, with response=True, its answer) as the library ships it."""
    return copy.deepcopy(_load(version, action, response))


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local "$ref"s ("#/definitions/Name"); the OCPP schemas use no other kind."""
    seen = 0
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"non-local $ref {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
        seen += 1
        if seen > 32:
            raise ValueError(f"$ref cycle at {ref!r}")
    return node


def _type(node: Mapping[str, Any]) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind


def minimal_instance(node: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """The smallest instance of `node` (a schema, or a part of `root`) that validates."""
    root = node if root is None else root
    node = _resolve(node, root)
    if "enum" in node:
        return node["enum"][0]
    kind = _type(node)
    if kind == "object" or (kind is None and "properties" in node):
        properties = node.get("properties", {})
        out: dict[str, Any] = {}
        for name in node.get("required", ()):
            if name not in properties:
                raise ValueError(f"required property {name!r} has no schema")
            out[name] = minimal_instance(properties[name], root)
        return out
    if kind == "array":
        items = node.get("items", {})
        if isinstance(items, list):  # tuple form: one schema per position
            return [minimal_instance(item, root) for item in items[: node.get("minItems", 0)]]
        return [minimal_instance(items, root) for _ in range(node.get("minItems", 0))]
    if kind == "string":
        fmt = node.get("format")
        text = TIMESTAMP if fmt == "date-time" else URI if fmt == "uri" else TEXT
        limit = node.get("maxLength")
        if limit is not None and len(text) > limit:
            if fmt is not None:
                raise ValueError(f"a {fmt} cannot be shorter than {len(text)} characters")
            text = text[:limit]
        return text
    if kind in ("integer", "number"):
        if "minimum" in node:
            return node["minimum"]
        maximum = node.get("maximum")
        return maximum if maximum is not None and maximum < 0 else 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    raise ValueError(f"cannot build an instance of {dict(node)!r}")


def minimal_payload(version: Version, action: str, *, response: bool = False) -> dict[str, Any]:
    """A minimal valid request (or, with response=True, answer) of `action` in `version`."""
    loaded = _load(version, action, response)
    payload = minimal_instance(loaded, loaded)
    assert isinstance(payload, dict)
    return payload


def broken_payload(
    version: Version, action: str, *, response: bool = False
) -> tuple[dict[str, Any], Err]:
    """The minimal payload made invalid, and the error class it must get.

    The first required property is removed (OccurrenceConstraintViolation); a message without
    required properties (Heartbeat) gets a property its schema forbids instead (FormatViolation).
    """
    loaded = _load(version, action, response)
    payload = minimal_payload(version, action, response=response)
    required = loaded.get("required") or []
    if required:
        del payload[required[0]]
        return payload, Err.OCCURRENCE
    if loaded.get("additionalProperties", True) is not False:
        raise ValueError(f"{version} {action}: no required property and extra ones allowed")
    payload[EXTRA_PROPERTY] = True
    return payload, Err.FORMAT
