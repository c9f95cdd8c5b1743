"""Configuration loading: includes, secrets, env vars, positions, and every kind of bad config."""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from hub.config import (
    MAX_NODES,
    ConfigError,
    NodeDict,
    SecretRedactor,
    Secrets,
    load_configuration,
    load_yaml,
    position,
    validate_configuration,
)

PANEL = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Required("max_current"): vol.All(int, vol.Range(min=1, max=4000)),
    }
)
SCHEMAS: dict[str, Any] = {
    "hub": {vol.Optional("name", default="evhub"): str},
    "recorder": vol.Schema(
        {
            vol.Optional("purge_keep_days", default=10): vol.All(int, vol.Range(min=1)),
            vol.Optional("db_url"): str,
        }
    ),
    "site": vol.Schema({vol.Required("name"): str, vol.Optional("panels", default=[]): [PANEL]}),
    "packages": dict,
}


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write files under root; text is dedented, so line 1 is the first line after the quotes."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


def check_config(root: Path, schemas: dict[str, Any] = SCHEMAS) -> list[ConfigError]:
    """What `evhub check-config -c root` reports."""
    try:
        raw, _ = load_configuration(root)
    except ConfigError as err:
        return [err]
    return validate_configuration(raw, schemas)[1]


def where(err: ConfigError) -> tuple[str | None, int | None, str | None]:
    return err.file, err.line, err.key


# --- what a working configuration gives ----------------------------------------------------


def test_nested_includes_resolve_relative_to_the_including_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "configuration.yaml": """
                hub:
                  name: depot
                site: !include sites/depot.yaml
            """,
            "sites/depot.yaml": """
                name: Depot A
                panels: !include panels.yaml
            """,
            "sites/panels.yaml": """
                - name: P1
                  max_current: 63
                - name: P2
                  max_current: 125
            """,
        },
    )

    raw, _ = load_configuration(tmp_path)

    assert raw["site"] == {
        "name": "Depot A",
        "panels": [{"name": "P1", "max_current": 63}, {"name": "P2", "max_current": 125}],
    }
    assert position(raw, "site") == ("configuration.yaml", 3)
    assert position(raw["site"]) == ("sites/depot.yaml", 1)
    assert position(raw["site"], "panels") == ("sites/depot.yaml", 2)
    assert position(raw["site"]["panels"], 1) == ("sites/panels.yaml", 3)
    assert position(raw["site"]["panels"][1], "max_current") == ("sites/panels.yaml", 4)
    assert position(raw["site"], "nope") == (None, None)
    assert position({"plain": 1}, "plain") == (None, None)


def test_include_dir_variants_like_home_assistant(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "configuration.yaml": """
                named: !include_dir_named parts
                listed: !include_dir_list parts
                merged: !include_dir_merge_named maps
                merged_list: !include_dir_merge_list lists
            """,
            "parts/b.yaml": "value: 2\n",
            "parts/a.yaml": "value: 1\n",
            "parts/nested/c.yaml": "value: 3\n",
            "parts/empty.yaml": "",
            "parts/.hidden.yaml": "value: hidden\n",
            "parts/.git/d.yaml": "value: hidden\n",
            "parts/secrets.yaml": "token: not-config\n",
            "parts/notes.txt": "not yaml\n",
            "maps/one.yaml": "alpha: 1\nbeta: 2\n",
            "maps/two.yaml": "gamma: 3\n",
            "lists/one.yaml": "- 1\n- 2\n",
            "lists/two.yaml": "- 3\n",
        },
    )

    raw = load_yaml(tmp_path / "configuration.yaml")

    assert raw["named"] == {
        "a": {"value": 1},
        "b": {"value": 2},
        "empty": {},
        "c": {"value": 3},
    }
    assert list(raw["named"]) == ["a", "b", "empty", "c"]  # sorted by path, like HA
    assert position(raw["named"], "c") == ("parts/nested/c.yaml", 1)
    assert raw["listed"] == [{"value": 1}, {"value": 2}, {"value": 3}]
    assert position(raw["listed"], 2) == ("parts/nested/c.yaml", 1)
    assert raw["merged"] == {"alpha": 1, "beta": 2, "gamma": 3}
    assert position(raw["merged"], "beta") == ("maps/one.yaml", 2)
    assert raw["merged_list"] == [1, 2, 3]
    assert position(raw["merged_list"], 2) == ("lists/two.yaml", 1)


def test_secrets_are_looked_up_in_the_files_folder_then_upwards(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "configuration.yaml": """
                recorder:
                  db_url: !secret db_url
                packages: !include_dir_named packages
            """,
            "secrets.yaml": """
                db_url: postgresql://evhub:top-secret-pw@db/evhub
                api_key: key-from-the-top
                unused: never-resolved
            """,
            "packages/site_b/secrets.yaml": "api_key: key-from-site-b\n",
            "packages/site_b/billing.yaml": """
                key: !secret api_key
                url: !secret db_url
            """,
            "packages/other.yaml": "key: !secret api_key\n",
        },
    )

    raw, secrets = load_configuration(tmp_path)

    assert raw["recorder"]["db_url"] == "postgresql://evhub:top-secret-pw@db/evhub"
    assert raw["packages"]["billing"] == {
        "key": "key-from-site-b",
        "url": "postgresql://evhub:top-secret-pw@db/evhub",
    }
    assert raw["packages"]["other"] == {"key": "key-from-the-top"}
    assert secrets.used_values() == {
        "postgresql://evhub:top-secret-pw@db/evhub",
        "key-from-site-b",
        "key-from-the-top",
    }


def test_numeric_secret_is_remembered_for_redaction(tmp_path: Path) -> None:
    write(tmp_path, {"secrets.yaml": "pin: 98765432\n", "configuration.yaml": "a: !secret pin\n"})

    raw, secrets = load_configuration(tmp_path)

    assert raw["a"] == 98765432
    assert secrets.used_values() == {"98765432"}


def test_env_var_with_and_without_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVHUB_TEST_DB_URL", "sqlite:///from-env.db")
    monkeypatch.delenv("EVHUB_TEST_UNSET", raising=False)
    write(
        tmp_path,
        {
            "configuration.yaml": """
                recorder:
                  db_url: !env_var EVHUB_TEST_DB_URL sqlite:///default.db
                hub:
                  name: !env_var EVHUB_TEST_UNSET Depot  North
            """
        },
    )

    raw, _ = load_configuration(tmp_path)

    assert raw["recorder"]["db_url"] == "sqlite:///from-env.db"
    assert raw["hub"]["name"] == "Depot  North"


def test_merge_keys_override_without_counting_as_duplicates(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "configuration.yaml": """
                defaults: &panel
                  name: P
                  max_current: 32
                site:
                  name: Depot
                  panels:
                    - <<: *panel
                      max_current: 63
            """
        },
    )

    raw, _ = load_configuration(tmp_path)

    assert raw["site"]["panels"] == [{"name": "P", "max_current": 63}]
    assert position(raw["site"]["panels"][0], "max_current") == ("configuration.yaml", 8)


def test_valid_config_is_returned_with_defaults_and_empty_blocks(tmp_path: Path) -> None:
    write(tmp_path, {"configuration.yaml": "hub:\nrecorder:\n  purge_keep_days: 3\n"})
    raw, _ = load_configuration(tmp_path)

    config, errors = validate_configuration(raw, SCHEMAS)

    assert errors == []
    assert config == {"hub": {"name": "evhub"}, "recorder": {"purge_keep_days": 3}}


def test_empty_configuration_is_valid(tmp_path: Path) -> None:
    write(tmp_path, {"configuration.yaml": "# nothing configured yet\n"})

    raw, _ = load_configuration(tmp_path)

    assert raw == {} and isinstance(raw, NodeDict)
    assert validate_configuration(raw, SCHEMAS) == ({}, [])


def test_error_text_names_file_line_and_key() -> None:
    assert str(
        ConfigError("expected int", "configuration.yaml", 12, "recorder.purge_keep_days")
    ) == ("configuration.yaml:12: recorder.purge_keep_days: expected int")
    assert str(ConfigError("file not found", "configuration.yaml")) == (
        "configuration.yaml: file not found"
    )
    assert str(ConfigError("plugin x claims core domain")) == "plugin x claims core domain"


# --- every kind of bad configuration names file, line and key --------------------------------

CFG = "configuration.yaml"
SITE_INCLUDE = """
    hub:
      name: depot
    site: !include site.yaml
"""

BAD_CONFIGS: list[tuple[str, dict[str, str | bytes], tuple[Any, ...], str]] = [
    (
        "yaml syntax error",
        {CFG: "recorder:\n  purge_keep_days: 3: 4\n"},
        (CFG, 2, None),
        "mapping values are not allowed here",
    ),
    (
        "tab indentation",
        {CFG: "recorder:\n\tpurge_keep_days: 3\n"},
        (CFG, 2, None),
        "tab character found: indent with spaces",
    ),
    (
        "duplicate key",
        {CFG: "recorder:\n  purge_keep_days: 3\n  db_url: x\n  purge_keep_days: 5\n"},
        (CFG, 4, "recorder.purge_keep_days"),
        "duplicate key 'purge_keep_days' (first on line 2)",
    ),
    (
        "unknown top-level domain",
        {CFG: "recorder:\n  purge_keep_days: 3\nchargers:\n  - id: cp1\n"},
        (CFG, 3, "chargers"),
        "unknown domain 'chargers': no plugin provides it",
    ),
    (
        "unknown key inside a domain",
        {CFG: "recorder:\n  purge_keep_days: 3\n  purge_interval: 5\n"},
        (CFG, 3, "recorder.purge_interval"),
        "unknown key 'purge_interval'",
    ),
    (
        "wrong type",
        {CFG: "recorder:\n  purge_keep_days: ten\n"},
        (CFG, 2, "recorder.purge_keep_days"),
        "expected int",
    ),
    (
        "value out of range",
        {CFG: "hub:\n  name: depot\nrecorder:\n  purge_keep_days: 0\n"},
        (CFG, 4, "recorder.purge_keep_days"),
        "value must be at least 1",
    ),
    (
        "missing required key",
        {CFG: "hub:\n  name: depot\nsite:\n  panels: []\n"},
        (CFG, 3, "site.name"),
        "required key not provided",
    ),
    (
        "missing required key at the top of an included file",
        {CFG: SITE_INCLUDE, "site.yaml": "panels: []\n"},
        ("site.yaml", 1, "site.name"),
        "required key not provided",
    ),
    (
        "missing required key in a list item of an included file",
        {CFG: SITE_INCLUDE, "site.yaml": "name: depot\npanels:\n  - name: P1\n"},
        ("site.yaml", 3, "site.panels.0.max_current"),
        "required key not provided",
    ),
    (
        "wrong value inside an included file",
        {
            CFG: SITE_INCLUDE,
            "site.yaml": """
                name: depot
                panels:
                  - name: P1
                    max_current: 63
                  - name: P2
                    max_current: 99999
            """,
        },
        ("site.yaml", 6, "site.panels.1.max_current"),
        "value must be at most 4000",
    ),
    (
        "missing !include file",
        {CFG: SITE_INCLUDE},
        (CFG, 3, "site"),
        "file not found: site.yaml",
    ),
    (
        "include cycle",
        {
            CFG: "site: !include a.yaml\n",
            "a.yaml": "name: a\npanels: !include b.yaml\n",
            "b.yaml": "- !include a.yaml\n",
        },
        ("b.yaml", 1, "site.panels.0"),
        "include cycle: a.yaml -> b.yaml -> a.yaml",
    ),
    (
        "missing !secret",
        {CFG: "recorder:\n  db_url: !secret db_url\n", "secrets.yaml": "other: x\n"},
        (CFG, 2, "recorder.db_url"),
        "secret 'db_url' not found in secrets.yaml",
    ),
    (
        "missing secrets.yaml",
        {CFG: "hub:\n  name: depot\nrecorder:\n  db_url: !secret db_url\n"},
        (CFG, 4, "recorder.db_url"),
        "secret 'db_url' requested but there is no secrets.yaml",
    ),
    (
        "!secret inside secrets.yaml",
        {CFG: "recorder:\n  db_url: !secret db_url\n", "secrets.yaml": "db_url: !secret x\n"},
        ("secrets.yaml", 1, "db_url"),
        "!secret cannot be used here",
    ),
    (
        "missing !env_var without default",
        {CFG: "recorder:\n  db_url: !env_var EVHUB_TEST_UNSET\n"},
        (CFG, 2, "recorder.db_url"),
        "environment variable 'EVHUB_TEST_UNSET' is not set and has no default",
    ),
    (
        "!include_dir_named of a missing folder",
        {CFG: "hub:\n  name: depot\npackages: !include_dir_named packages\n"},
        (CFG, 3, "packages"),
        "directory not found: packages",
    ),
    (
        "two files with one name in !include_dir_named",
        {
            CFG: "packages: !include_dir_named packages\n",
            "packages/a/tariff.yaml": "x: 1\n",
            "packages/b/tariff.yaml": "x: 2\n",
        },
        (CFG, 1, "packages"),
        "two files named 'tariff': packages/a/tariff.yaml and packages/b/tariff.yaml",
    ),
    (
        "duplicate key across !include_dir_merge_named files",
        {
            CFG: "packages: !include_dir_merge_named packages\n",
            "packages/a.yaml": "x: 1\ny: 2\n",
            "packages/b.yaml": "z: 3\ny: 4\n",
        },
        ("packages/b.yaml", 2, "packages.y"),
        "duplicate key 'y' (first in packages/a.yaml:2)",
    ),
    (
        "top level is a list",
        {CFG: "- recorder\n- site\n"},
        (CFG, 1, None),
        "top level must be a mapping of domains",
    ),
    (
        "python/object tag",
        {CFG: 'recorder:\n  db_url: !!python/object/apply:os.system ["echo hi"]\n'},
        (CFG, 2, "recorder.db_url"),
        "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply",
    ),
    (
        "unknown tag",
        {CFG: "recorder:\n  db_url: !vault db/url\n"},
        (CFG, 2, "recorder.db_url"),
        "could not determine a constructor for the tag '!vault'",
    ),
    (
        "alias that refers to itself",
        {CFG: "recorder: &r\n  db_url: *r\n"},
        (CFG, 2, "recorder.db_url"),
        "alias refers to itself",
    ),
    (
        "alias repeating an !include",
        {CFG: "site: &s !include site.yaml\nhub: *s\n", "site.yaml": "name: x\n"},
        (CFG, 2, "hub"),
        "an alias cannot repeat an !include",
    ),
    (
        "list or mapping used as a key",
        {CFG: "? [a, b]\n: 1\n"},
        (CFG, 1, None),
        "a key must be a plain value",
    ),
    (
        "two documents in one file",
        {CFG: "recorder: {}\n---\nsite: {}\n"},
        (CFG, 2, None),
        "expected a single document in the stream",
    ),
    (
        "invalid UTF-8",
        {CFG: b"hub:\n  name: depot\nrecorder:\n  db_url: \xff\xfe\n"},
        (CFG, 4, None),
        "not valid UTF-8",
    ),
    (
        "syntax error inside an included file",
        {CFG: SITE_INCLUDE, "site.yaml": "name: depot\npanels:\n  - name: [P1\n"},
        ("site.yaml", 4, "site"),
        "while parsing a flow sequence",
    ),
    (
        "explicit tag with an invalid value",
        {CFG: "recorder:\n  purge_keep_days: !!int ten\n"},
        (CFG, 2, "recorder.purge_keep_days"),
        "invalid tag:yaml.org,2002:int",
    ),
    (
        "control character",
        {CFG: "hub:\n  name: de\x07pot\n"},
        (CFG, 2, None),
        "special characters are not allowed (character #x0007)",
    ),
    (
        "missing configuration.yaml",
        {"automations.yaml": "[]\n"},
        (CFG, None, None),
        "not found in",
    ),
]


@pytest.mark.parametrize(
    ("files", "expected_where", "message"),
    [pytest.param(files, at, message, id=kind) for kind, files, at, message in BAD_CONFIGS],
)
def test_bad_configuration_is_reported_with_file_line_and_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str | bytes],
    expected_where: tuple[Any, ...],
    message: str,
) -> None:
    monkeypatch.delenv("EVHUB_TEST_UNSET", raising=False)
    write(tmp_path, files)

    errors = check_config(tmp_path)

    assert [where(err) for err in errors] == [expected_where]
    assert message in errors[0].message


def test_hostile_yaml_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write(
        tmp_path,
        {
            CFG: f"""
                a: !!python/object/apply:os.system ["touch {marker}"]
                b: !!python/object/new:subprocess.Popen [["touch", "{marker}"]]
            """
        },
    )

    with pytest.raises(ConfigError) as caught:
        load_configuration(tmp_path)

    assert where(caught.value) == (CFG, 1, "a")
    assert not marker.exists()


@pytest.mark.timeout(10)
def test_alias_bomb_is_rejected_before_it_expands(tmp_path: Path) -> None:
    # The classic "billion laughs": ten levels, each ten aliases of the one before.
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]" for i in range(1, 10)]
    write(tmp_path, {CFG: "\n".join(lines) + "\n"})

    errors = check_config(tmp_path)

    # lol5 would be the first to pass MAX_NODES (1,111,111 values).
    assert [where(err) for err in errors] == [(CFG, 6, "lol5")]
    assert errors[0].message == f"expands to more than {MAX_NODES} values"


@pytest.mark.timeout(10)
def test_merge_key_bomb_is_rejected(tmp_path: Path) -> None:
    keys = ", ".join(f"k{i}: {i}" for i in range(10))
    lines = [f"m0: &m0 {{{keys}}}"]
    lines += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}" for i in range(1, 9)]
    write(tmp_path, {CFG: "\n".join(lines) + "\n"})

    errors = check_config(tmp_path)

    assert [where(err) for err in errors] == [(CFG, 6, "m5")]


@pytest.mark.timeout(10)
def test_absurdly_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    write(tmp_path, {CFG: "hub: " + "[" * 5000 + "]" * 5000 + "\n"})

    errors = check_config(tmp_path)

    assert [(err.file, err.message) for err in errors] == [(CFG, "nested too deeply")]


def test_errors_in_several_domains_are_all_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            CFG: """
                hub:
                  name: depot
                  colour: green
                recorder:
                  purge_keep_days: -1
                site: !include site.yaml
                tariffs:
                  grid: 0.31
            """,
            "site.yaml": """
                name: depot
                panels:
                  - name: P1
                    max_current: lots
            """,
        },
    )

    errors = check_config(tmp_path)

    assert [(where(err), err.message) for err in errors] == [
        ((CFG, 3, "hub.colour"), "unknown key 'colour'"),
        ((CFG, 5, "recorder.purge_keep_days"), "value must be at least 1"),
        (("site.yaml", 4, "site.panels.0.max_current"), "expected int"),
        ((CFG, 7, "tariffs"), "unknown domain 'tariffs': no plugin provides it"),
    ]
    assert str(errors[2]) == "site.yaml:4: site.panels.0.max_current: expected int"


def test_failed_blocks_are_left_out_and_good_ones_kept(tmp_path: Path) -> None:
    write(tmp_path, {CFG: "hub:\n  name: depot\nrecorder:\n  purge_keep_days: 0\n"})
    raw, _ = load_configuration(tmp_path)

    config, errors = validate_configuration(raw, SCHEMAS)

    assert config == {"hub": {"name": "depot"}}
    assert [where(err) for err in errors] == [(CFG, 4, "recorder.purge_keep_days")]


def test_a_broken_plugin_validator_does_not_hide_other_errors(tmp_path: Path) -> None:
    def broken(value: Any) -> Any:
        raise TypeError("plugin bug")

    write(tmp_path, {CFG: "ocpp:\n  port: 9000\nrecorder:\n  purge_keep_days: x\n"})
    raw, _ = load_configuration(tmp_path)

    _, errors = validate_configuration(raw, {**SCHEMAS, "ocpp": broken})

    assert [(where(err), err.message) for err in errors] == [
        ((CFG, 1, "ocpp"), "schema failed: TypeError: plugin bug"),
        ((CFG, 4, "recorder.purge_keep_days"), "expected int"),
    ]


def test_a_rebuilt_plain_top_level_still_points_into_the_block(tmp_path: Path) -> None:
    # The bootstrap adds default domains by building a new dict; positions must survive that.
    write(tmp_path, {CFG: "recorder:\n  purge_keep_days: 3\n  extra: 1\n"})
    raw, _ = load_configuration(tmp_path)

    _, errors = validate_configuration({"hub": {}, **raw}, SCHEMAS)

    assert [where(err) for err in errors] == [(CFG, 3, "recorder.extra")]


def test_secret_values_never_reach_the_logs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            CFG: "recorder:\n  db_url: !secret db_url\nhub:\n  name: !secret short\n",
            "secrets.yaml": "db_url: postgresql://evhub:Tr0ub4dor@db/evhub\nshort: abc\n",
        },
    )
    raw, secrets = load_configuration(tmp_path)
    url = raw["recorder"]["db_url"]
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(SecretRedactor(secrets.used_values))
    logger = logging.getLogger("evhub.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("connecting to %s", url)
        logger.info("connecting to %(url)s as %(name)s", {"url": url, "name": "abc"})
        logger.warning(f"raw message with {url} inside")
        try:
            raise ConnectionError(f"could not connect to {url}")
        except ConnectionError:
            logger.exception("recorder failed")
    finally:
        logger.removeHandler(handler)

    text = output.getvalue()
    assert "Tr0ub4dor" not in text
    assert text.splitlines()[:4] == [
        "INFO connecting to ***",
        "INFO connecting to *** as abc",  # secrets shorter than 4 characters are left alone
        "WARNING raw message with *** inside",
        "ERROR recorder failed",
    ]
    assert "ConnectionError: could not connect to ***" in text


def test_secrets_object_can_be_used_directly(tmp_path: Path) -> None:
    write(tmp_path, {"secrets.yaml": "token: abcd1234\n", "sub/x.yaml": "t: !secret token\n"})
    secrets = Secrets(tmp_path)

    assert load_yaml(tmp_path / "sub" / "x.yaml", secrets) == {"t": "abcd1234"}
    with pytest.raises(ConfigError) as caught:
        secrets.get("nope", tmp_path / "sub" / "x.yaml")
    assert where(caught.value) == ("sub/x.yaml", None, None)
    assert secrets.used_values() == {"abcd1234"}
