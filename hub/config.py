"""Configuration loading: safe YAML with !include, !secret and !env_var, and per-plugin validation.

Every problem becomes a ConfigError naming file, line and dotted key; check-config lists them all.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

SECRETS_FILE = "secrets.yaml"
# Expanded size (every alias and merge counted each time it is used) allowed for one configuration.
# Real configurations stay far below; a "billion laughs" document goes far above in a few levels.
MAX_NODES = 250_000
MAX_FILES = 5_000
_MERGE_TAG = "tag:yaml.org,2002:merge"

Position = tuple[str | None, int | None]


@dataclass(eq=False)  # exceptions compare and hash by identity
class ConfigError(Exception):
    """One problem in the configuration."""

    message: str
    file: str | None = None  # relative to the config dir when inside it
    line: int | None = None  # 1-based
    key: str | None = None  # dotted from the top of configuration.yaml: "site.panels.0.max_current"

    def __str__(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return ": ".join(part for part in (where, self.key or "", self.message) if part)


class NodeDict(dict[Any, Any]):
    """A YAML mapping that remembers its own file/line and that of each key."""

    file: str | None = None
    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_positions: dict[Any, Position] = {}


class NodeList(list[Any]):
    """A YAML sequence that remembers its own file/line and that of each item."""

    file: str | None = None
    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_positions: list[Position] = []


def position(node: Any, key: str | int | None = None) -> Position:
    """File and line of `node`, or of `node[key]` when a key or index is given."""
    if key is None and isinstance(node, NodeDict | NodeList):
        return node.file, node.line
    if isinstance(node, NodeDict):
        return node.key_positions.get(key, (None, None))
    if isinstance(node, NodeList) and isinstance(key, int) and 0 <= key < len(node.item_positions):
        return node.item_positions[key]
    return None, None


def _at(node: Any, file: str, line: int) -> Any:
    node.file, node.line = file, line
    return node


def _display(path: Path, config_dir: Path) -> str:
    path = path.resolve()
    return path.relative_to(config_dir).as_posix() if path.is_relative_to(config_dir) else str(path)


def _string_values(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in _string_values(item)]
    # Numbers count too: an all-digit PIN or password is parsed by YAML as an int.
    plain = isinstance(value, str | int | float) and not isinstance(value, bool)
    return [str(value)] if plain else []


class Secrets:
    """secrets.yaml of the config dir, loaded lazily, once. As in Home Assistant, a !secret in a
    subfolder's file looks in that folder's secrets.yaml first, then in each parent up to here."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = Path(config_dir).resolve()
        self._files: dict[Path, Mapping[str, Any] | None] = {}
        self._used: set[str] = set()

    def get(self, name: str, requesting_file: Path) -> Any:
        start = Path(requesting_file).resolve().parent
        folders = [f for f in (start, *start.parents) if f.is_relative_to(self.config_dir)]
        files = [s for f in folders or [self.config_dir] if (s := self._load(f)) is not None]
        for secrets in files:
            if name in secrets:
                self._used.update(_string_values(secrets[name]))
                return secrets[name]
        where = _display(Path(requesting_file), self.config_dir)
        if not files:
            raise ConfigError(f"secret '{name}' requested but there is no {SECRETS_FILE}", where)
        raise ConfigError(f"secret '{name}' not found in {SECRETS_FILE}", where)

    def used_values(self) -> set[str]:
        return set(self._used)

    def _load(self, folder: Path) -> Mapping[str, Any] | None:
        if folder not in self._files:
            path = folder / SECRETS_FILE
            load = functools.partial(_load_file, _Context(self.config_dir, None), path, [], None)
            data = (load() or {}) if path.is_file() else None
            if data is not None and not isinstance(data, Mapping):
                where = _display(path, self.config_dir)
                raise ConfigError("must be a mapping of secret names to values", where, 1)
            self._files[folder] = data
        return self._files[folder]


@dataclass
class _Context:
    """State shared by one top-level load and every file it includes."""

    config_dir: Path
    secrets: Secrets | None
    stack: list[Path] = field(default_factory=list)
    budget: int = MAX_NODES
    files: int = 0

    def display(self, path: Path) -> str:
        return _display(path, self.config_dir)


def _load_file(
    ctx: _Context, path: Path, prefix: list[Any], origin: tuple[str, int, str | None] | None
) -> Any:
    """Load one file; `origin` is the (file, line, key) of the !include that names it, if any."""
    path = path.resolve()
    name = ctx.display(path)

    def fail(message: str) -> ConfigError:
        return ConfigError(message, *(origin or (name,)))

    if path in ctx.stack:
        chain = " -> ".join([*(ctx.display(p) for p in ctx.stack[ctx.stack.index(path) :]), name])
        raise fail(f"include cycle: {chain}")
    ctx.files += 1
    if ctx.files > MAX_FILES:
        raise fail(f"more than {MAX_FILES} files included")
    try:
        data = path.read_bytes()
    except OSError as err:
        missing = isinstance(err, FileNotFoundError)
        raise fail(f"file not found: {name}" if missing else f"cannot read {name}: {err}") from None
    try:
        text = data.decode("utf-8-sig")
        loader = _Loader(text, path, ctx, prefix)  # checks for unprintable characters at once
    except UnicodeDecodeError as err:
        raise ConfigError("not valid UTF-8", name, data[: err.start].count(b"\n") + 1) from None
    except ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise ConfigError(f"{err.reason} (character #x{err.character:04x})", name, line) from None
    ctx.stack.append(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        ctx.budget -= loader.expanded_size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise loader.yaml_error(err) from None
    except RecursionError:
        raise ConfigError("nested too deeply", name) from None
    finally:
        ctx.stack.pop()
        loader.dispose()


def load_yaml(path: Path, secrets: Secrets | None = None) -> Any:
    """Load one YAML file (and what it includes) safely; an empty file gives None. Without
    `secrets`, !secret is an error and file names are relative to the file's own folder."""
    config_dir = secrets.config_dir if secrets is not None else Path(path).parent
    return _load_file(_Context(config_dir.resolve(), secrets), Path(path), [], None)


class _Loader(yaml.SafeLoader):
    """SafeLoader that builds NodeDict/NodeList and knows the dotted key it is constructing."""

    def __init__(self, text: str, path: Path, ctx: _Context, prefix: list[Any]) -> None:
        super().__init__(text)
        self.path = path
        self.ctx = ctx
        self.file = ctx.display(path)
        self.key_prefix = prefix
        # Deliberately not unwound when an error escapes: it then still says where it happened.
        self.keys: list[Any] = []

    def key(self, path: list[Any] | None = None) -> str | None:
        parts = (*self.key_prefix, *(self.keys if path is None else path))
        return ".".join(str(part) for part in parts) or None

    def error(self, message: str, node: Node) -> ConfigError:
        return ConfigError(message, self.file, node.start_mark.line + 1, self.key())

    def yaml_error(self, err: yaml.YAMLError) -> ConfigError:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        parts = [getattr(err, "context", None), getattr(err, "problem", None)]
        message = ", ".join(str(part) for part in parts if part) or str(err)
        if "'\\t'" in message:
            message = "tab character found: indent with spaces"
        # A syntax error comes before any key is read: then only the include's own key is known.
        return ConfigError(message, self.file, line, self.key())

    def expanded_size(self, root: Node) -> int:
        """Size of the document with every alias and merge expanded; reject bombs and loops."""
        sizes: dict[int, int] = {}
        active: set[int] = set()
        includes: set[int] = set()  # nodes with an !include* somewhere below

        # `line` is where the node is used (an alias's own position is lost in composing).
        def size(node: Node, path: list[Any], line: int) -> int:
            def fail(message: str) -> ConfigError:
                return ConfigError(message, self.file, line, self.key(path))

            if id(node) in includes:
                # An include's size is unknown until it is loaded: repeating it could hide a bomb.
                raise fail("an alias cannot repeat an !include; include the file again")
            if id(node) in sizes:
                return sizes[id(node)]
            if id(node) in active:
                raise fail("alias refers to itself")
            active.add(id(node))
            items = node.value if isinstance(node, SequenceNode) else ()
            children = [(x, [*path, i], x.start_mark.line + 1) for i, x in enumerate(items)]
            for k, v in node.value if isinstance(node, MappingNode) else ():
                merged = k.tag == _MERGE_TAG or not isinstance(k, ScalarNode)
                at = k.start_mark.line + 1
                children += [(k, path, at), (v, path if merged else [*path, k.value], at)]
            total = 1 + sum(size(*child) for child in children)
            active.discard(id(node))
            if total > self.ctx.budget:
                raise fail(f"expands to more than {MAX_NODES} values")
            sizes[id(node)] = total
            if str(node.tag).startswith("!include") or any(id(c[0]) in includes for c in children):
                includes.add(id(node))
            return total

        return size(root, [], root.start_mark.line + 1)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError) as err:  # PyYAML on `!!int abc`, `!!bool maybe`
            raise self.error(f"invalid {node.tag}: {err}", node) from None

    def construct_node_dict(self, node: Node) -> NodeDict:
        if not isinstance(node, MappingNode):
            raise self.error(f"expected a mapping, found {node.id}", node)
        own = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
        self.flatten_mapping(node)
        result = _at(NodeDict(), self.file, node.start_mark.line + 1)
        own_lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                raise self.error("a key must be a plain value", key_node)
            self.keys.append(key)
            if id(key_node) in own:
                if key in own_lines:
                    message = f"duplicate key '{key}' (first on line {own_lines[key]})"
                    raise self.error(message, key_node)
                own_lines[key] = line
            result[key] = self.construct_object(value_node, deep=True)
            result.key_positions[key] = (self.file, line)
            self.keys.pop()
        return result

    def construct_node_list(self, node: Node) -> NodeList:
        if not isinstance(node, SequenceNode):
            raise self.error(f"expected a list, found {node.id}", node)
        result = _at(NodeList(), self.file, node.start_mark.line + 1)
        for index, item in enumerate(node.value):
            self.keys.append(index)
            result.append(self.construct_object(item, deep=True))
            result.item_positions.append((self.file, item.start_mark.line + 1))
            self.keys.pop()
        return result

    def argument(self, node: Node) -> str:
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            raise self.error(f"{node.tag} needs an argument", node)
        return str(node.value).strip()

    def load(self, path: Path, node: Node, *key: Any) -> Any:
        """Load an included file; errors about the file itself point at the tag in this one."""
        origin = (self.file, node.start_mark.line + 1, self.key())
        return _load_file(self.ctx, path, [*self.key_prefix, *self.keys, *key], origin)

    def include(self, node: Node) -> Any:
        return self.load(self.path.parent / self.argument(node), node)

    def include_dir(self, node: Node) -> list[tuple[str, Path]]:
        """(stem, path) of every *.yaml below the named folder, sorted, hidden ones skipped."""
        folder = (self.path.parent / self.argument(node)).resolve()
        if not folder.is_dir():
            raise self.error(f"directory not found: {self.ctx.display(folder)}", node)
        paths = sorted(folder.rglob("*.yaml"))
        visible = [p for p in paths if "/." not in f"/{p.relative_to(folder).as_posix()}"]
        return [(p.stem, p) for p in visible if p.name != SECRETS_FILE]

    def include_dir_named(self, node: Node) -> NodeDict:
        result = _at(NodeDict(), self.file, node.start_mark.line + 1)
        for stem, path in self.include_dir(node):
            if stem in result:
                other = result.key_positions[stem][0]
                message = f"two files named '{stem}': {other} and {self.ctx.display(path)}"
                raise self.error(message, node)
            loaded = self.load(path, node, stem)
            result[stem] = NodeDict() if loaded is None else loaded
            result.key_positions[stem] = (self.ctx.display(path), 1)
        return result

    def include_dir_list(self, node: Node, merge: bool = False) -> NodeList:
        result = _at(NodeList(), self.file, node.start_mark.line + 1)
        for _, path in self.include_dir(node):
            loaded = self.load(path, node, len(result))
            if loaded is None:
                continue
            if not merge:
                result.append(loaded)
                result.item_positions.append((self.ctx.display(path), 1))
            elif isinstance(loaded, NodeList):
                result.extend(loaded)
                result.item_positions.extend(loaded.item_positions)
            else:
                raise ConfigError("expected a list to merge", self.ctx.display(path), 1, self.key())
        return result

    def include_dir_merge_named(self, node: Node) -> NodeDict:
        result = _at(NodeDict(), self.file, node.start_mark.line + 1)
        for _, path in self.include_dir(node):
            loaded = self.load(path, node)
            if loaded is None:
                continue
            name = self.ctx.display(path)
            if not isinstance(loaded, NodeDict):
                raise ConfigError("expected a mapping to merge", name, 1, self.key())
            for key, value in loaded.items():
                file, line = loaded.key_positions[key]
                if key in result:
                    first = "{}:{}".format(*result.key_positions[key])
                    message = f"duplicate key '{key}' (first in {first})"
                    raise ConfigError(message, file, line, self.key([*self.keys, key]))
                result[key] = value
                result.key_positions[key] = (file, line)
        return result

    def secret(self, node: Node) -> Any:
        name = self.argument(node)
        if self.ctx.secrets is None:
            raise self.error("!secret cannot be used here", node)
        try:
            return self.ctx.secrets.get(name, self.path)
        except ConfigError as err:
            if err.file == self.file and err.line is None:
                err.line, err.key = node.start_mark.line + 1, self.key()
            raise

    def env_var(self, node: Node) -> str:
        name, _, default = self.argument(node).partition(" ")
        value = os.environ.get(name, default.strip() or None)
        if value is None:
            raise self.error(f"environment variable '{name}' is not set and has no default", node)
        return value


for _tag, _constructor in {
    "tag:yaml.org,2002:map": _Loader.construct_node_dict,
    "tag:yaml.org,2002:seq": _Loader.construct_node_list,
    "!include": _Loader.include,
    "!include_dir_named": _Loader.include_dir_named,
    "!include_dir_list": _Loader.include_dir_list,
    "!include_dir_merge_named": _Loader.include_dir_merge_named,
    "!include_dir_merge_list": lambda loader, node: loader.include_dir_list(node, merge=True),
    "!secret": _Loader.secret,
    "!env_var": _Loader.env_var,
}.items():
    _Loader.add_constructor(_tag, _constructor)


def load_configuration(config_dir: Path) -> tuple[dict[str, Any], Secrets]:
    """Load config_dir/configuration.yaml; the top level must be a mapping of domains."""
    secrets = Secrets(Path(config_dir))
    path = secrets.config_dir / "configuration.yaml"
    if not path.is_file():
        raise ConfigError(f"not found in {secrets.config_dir}", "configuration.yaml")
    raw = load_yaml(path, secrets)
    if raw is None:
        return _at(NodeDict(), "configuration.yaml", 1), secrets
    if not isinstance(raw, NodeDict):
        message = "top level must be a mapping of domains (recorder:, site:, ...)"
        raise ConfigError(message, "configuration.yaml", 1)
    return raw, secrets


def _locate(raw: Mapping[str, Any], path: list[Any]) -> Position:
    """Position of the deepest node on `path` that has one."""
    node: Any = raw
    best: Position = (None, None)
    for part in path:
        found = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not found:
            # A key missing from an included mapping: that file says more than the include line.
            own = position(node)
            if own[0] is not None and own[0] != best[0]:
                best = own
            break
        here = position(node, part)
        node = node[part]
        # A caller may rebuild the top level as a plain dict; the block still knows where it is.
        best = here if here[0] is not None else (position(node) if best[0] is None else best)
    return best


def validate_configuration(
    raw: Mapping[str, Any], schemas: Mapping[str, Any]
) -> tuple[dict[str, Any], list[ConfigError]]:
    """Validate each domain's block with its plugin's schema; return (config, every error).
    An empty block (`recorder:`) means `{}`, as in Home Assistant; failed blocks are left out."""
    validated: dict[str, Any] = {}
    errors: list[ConfigError] = []

    def add(message: str, path: list[Any]) -> None:
        errors.append(ConfigError(message, *_locate(raw, path), ".".join(map(str, path))))

    for domain, block in raw.items():
        if domain not in schemas:
            add(f"unknown domain '{domain}': no plugin provides it", [domain])
            continue
        schema = schemas[domain]
        schema = schema if isinstance(schema, vol.Schema) else vol.Schema(schema)
        try:
            validated[domain] = schema({} if block is None else block)
        except vol.MultipleInvalid as exc:
            for err in exc.errors:  # voluptuous keeps these flat
                unknown = err.msg == "extra keys not allowed" and err.path
                add(f"unknown key '{err.path[-1]}'" if unknown else err.msg, [domain, *err.path])
        except Exception as exc:  # a plugin's broken validator must not hide the other errors
            add(f"schema failed: {type(exc).__name__}: {exc}", [domain])
    return validated, errors


class SecretRedactor(logging.Filter):
    """Replaces every occurrence of the given secret strings in log records with '***'."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        # Longest first, so a secret containing a shorter one is replaced whole.
        values = sorted({s for s in self._secrets() if len(s) >= 4}, key=len, reverse=True)
        if not values:
            return True
        redact = functools.partial(re.compile("|".join(map(re.escape, values))).sub, "***")
        try:
            message = record.getMessage()
        except Exception:  # a bad format string still must not leak its arguments
            message = " ".join(str(part) for part in (record.msg, record.args))
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set, so the traceback is rendered once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = record.exc_text and redact(record.exc_text)
        record.stack_info = record.stack_info and redact(record.stack_info)
        return True
