"""The built-in allow-list authorizer on a real hub: configuration.yaml in, decisions out.

Every hub here is built by `create_hub` from a config dir, so the entry point, the schema and the
recorder's database are the real ones; time is the SimClock (2026-03-02 06:00 UTC).
"""

from __future__ import annotations

import json
import logging
import stat
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.bootstrap import ConfigInvalid, create_hub, load_plugins
from hub.bus import Context, Event
from hub.charging import (
    AuthorizationResult,
    AuthorizationStatus,
    IdToken,
    authorize,
    pseudonym_key,
    pseudonymize,
)
from hub.charging.auth import NO_ANSWER
from hub.clock import SimClock
from hub.core import Hub
from hub.plugins import PluginHost, PluginStatus, hookimpl
from hub.services import ServiceValidationError
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import create_recorder_engine
from plugins.allowlist import AllowListError, local_list, local_list_changes, store

TOKENS = """\
allowlist:
  tokens:
    - id: 04A1B2C3
      name: Van 17 card
      group: fleet
      expiry: 2026-03-31T00:00:00+02:00
    - id: 0BADCAFE
      name: Lost card
      blocked: true
    - id: "11223344"
      name: Bays 1 and 2 only
      chargers: [charger.bay_01, charger.bay_02]
"""
BAY_1, BAY_3 = "charger.bay_01", "charger.bay_03"

StartHub = Callable[..., Awaitable[Hub]]


def write_config(config_dir: Path, allowlist: str = TOKENS, db_url: str | None = None) -> Path:
    text = allowlist
    if db_url is not None:
        text += f"recorder:\n  db_url: {json.dumps(db_url)}\n"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(text)
    return config_dir


@pytest.fixture
async def start_hub(clock: SimClock) -> AsyncIterator[StartHub]:
    """Builds and starts hubs from config dirs; stops whatever is still running at the end."""
    hubs: list[Hub] = []

    async def start(config_dir: Path, host: PluginHost | None = None) -> Hub:
        hub = create_hub(config_dir, clock=clock, host=host)
        hubs.append(hub)
        await hub.start()
        assert hub.plugins is not None
        assert hub.plugins.records["allowlist"].status is PluginStatus.SET_UP
        return hub

    yield start
    for hub in hubs:
        await hub.stop()


@pytest.fixture
async def hub(tmp_path: Path, start_hub: StartHub) -> Hub:
    return await start_hub(write_config(tmp_path / "config"))


def events(hub: Hub, event_type: str) -> list[Event]:
    seen: list[Event] = []
    hub.bus.listen(event_type, seen.append)
    return seen


async def status(hub: Hub, token_id: str, charger: str = BAY_1) -> AuthorizationStatus:
    return (await authorize(hub, IdToken(token_id), charger)).status


# --- decisions ------------------------------------------------------------------------------


async def test_each_configured_token_gets_its_answer_and_strangers_are_denied(hub: Hub) -> None:
    van = await authorize(hub, IdToken("04A1B2C3"), BAY_1)
    assert van.accepted
    assert van.expiry == datetime(2026, 3, 30, 22, 0, tzinfo=UTC)
    assert (van.group_id, van.source) == ("FLEET", "allowlist")

    assert await status(hub, "0BADCAFE") is AuthorizationStatus.BLOCKED
    assert await status(hub, "11223344", BAY_1) is AuthorizationStatus.ACCEPTED
    assert await status(hub, "11223344", BAY_3) is AuthorizationStatus.NOT_AT_THIS_LOCATION

    stranger = await authorize(hub, IdToken("DEADBEEF"), BAY_1)
    assert (stranger.status, stranger.reason, stranger.source) == (
        AuthorizationStatus.INVALID,
        NO_ANSWER,
        None,
    )
    assert not stranger.accepted


async def test_a_card_expires_when_the_clock_passes_its_expiry(hub: Hub, clock: SimClock) -> None:
    assert await status(hub, "04A1B2C3") is AuthorizationStatus.ACCEPTED
    await clock.advance((datetime(2026, 3, 30, 22, 0, tzinfo=UTC) - clock.now()).total_seconds())
    result = await authorize(hub, IdToken("04A1B2C3"), BAY_1)
    assert result.status is AuthorizationStatus.EXPIRED
    assert result.reason is not None and "expired" in result.reason


async def test_one_card_is_one_card_however_the_reader_spells_its_uid(hub: Hub) -> None:
    assert IdToken(" 04a1b2c3 ", "iso14443") == IdToken("04A1B2C3")
    assert await status(hub, "04a1b2c3") is AuthorizationStatus.ACCEPTED
    key = pseudonym_key(hub)
    assert pseudonymize("04a1b2c3", key) == pseudonymize("04A1B2C3", key)

    await hub.services.call("allowlist", "add_token", {"id": "aa:bb:cc:dd", "type": "iso15693"})
    assert await status(hub, "AA:BB:CC:DD") is AuthorizationStatus.ACCEPTED
    types_ = {e["id"]: e["type"] for e in local_list(hub)[1]}
    assert types_["AA:BB:CC:DD"] == "ISO15693"


async def test_the_authorization_event_and_the_log_carry_a_pseudonym_not_the_card(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fired = events(hub, "authorization")
    context = Context(user_id="operator")
    await authorize(hub, IdToken("0badcafe"), BAY_1, context)
    await hub.services.call("allowlist", "add_token", {"id": "C0FFEE42"})

    key_file = hub.config_dir / ".storage" / "pseudonym.key"  # type: ignore[operator]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    (event,) = fired
    assert event.context is context
    assert dict(event.data) == {
        "charger": BAY_1,
        "token": pseudonymize("0BADCAFE", key_file.read_bytes()),
        "status": "Blocked",
        "source": "allowlist",
    }
    assert len(event.data["token"]) == 16
    logged = " ".join(r.getMessage() for r in caplog.records).upper()
    assert "0BADCAFE" not in logged and "C0FFEE42" not in logged
    assert pseudonymize("C0FFEE42", key_file.read_bytes()) in logged.lower()


def test_a_damaged_or_exposed_pseudonym_key_file_is_repaired(
    tmp_path: Path, clock: SimClock
) -> None:
    storage = tmp_path / ".storage"
    storage.mkdir()
    key_file = storage / "pseudonym.key"
    key_file.write_bytes(b"short")  # a torn write, say
    key = pseudonym_key(Hub(tmp_path, clock=clock))
    assert len(key) == 32 and key_file.read_bytes() == key
    assert (storage / "pseudonym.key.corrupt").read_bytes() == b"short"

    key_file.chmod(0o644)
    assert pseudonym_key(Hub(tmp_path, clock=clock)) == key  # same key, same pseudonyms
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# --- other authorizers ----------------------------------------------------------------------


def authorizer(name: str, answer: Callable[[dict[str, Any]], Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.hub_authorize = hookimpl(lambda id_token, charger: answer(id_token))  # type: ignore[attr-defined]
    return module


def crash(_token: dict[str, Any]) -> Any:
    raise RuntimeError("accounts database unreachable")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (crash, AuthorizationStatus.INVALID),
        (lambda _t: {"status": "Perhaps", "source": "confused"}, AuthorizationStatus.INVALID),
        (lambda _t: 42, AuthorizationStatus.INVALID),
        (
            lambda _t: AuthorizationResult(
                AuthorizationStatus.ACCEPTED, expiry=datetime(2026, 1, 1, tzinfo=UTC)
            ),
            AuthorizationStatus.EXPIRED,
        ),
    ],
    ids=["crashes", "unknown-status", "not-a-mapping", "stale-acceptance"],
)
async def test_a_broken_authorizer_never_lets_a_card_through(
    tmp_path: Path,
    start_hub: StartHub,
    answer: Callable[[dict[str, Any]], Any],
    expected: AuthorizationStatus,
) -> None:
    host = PluginHost()  # asked before the allow-list, which comes from the entry points
    host.register("accounts", authorizer("accounts", answer))
    host.load_entry_points()
    hub = await start_hub(write_config(tmp_path / "config"), host=host)
    assert (await authorize(hub, IdToken("DEADBEEF"), BAY_1)).status is expected


async def test_an_authorizer_may_answer_with_a_plain_mapping(
    tmp_path: Path, start_hub: StartHub
) -> None:
    answer = {"status": "accepted", "expiry": "2026-04-01T00:00:00+00:00", "source": "accounts"}
    host = PluginHost()
    host.register("accounts", authorizer("accounts", lambda _t: answer))
    host.load_entry_points()
    hub = await start_hub(write_config(tmp_path / "config"), host=host)
    result = await authorize(hub, IdToken("DEADBEEF"), BAY_1)
    assert (result.status, result.source) == (AuthorizationStatus.ACCEPTED, "accounts")
    assert result.expiry == datetime(2026, 4, 1, tzinfo=UTC)


async def test_without_plugins_every_card_is_denied(tmp_path: Path, clock: SimClock) -> None:
    bare = Hub(tmp_path, clock=clock)  # no plugin host at all
    result = await authorize(bare, IdToken("04A1B2C3"), BAY_1)
    assert (result.status, result.reason) == (AuthorizationStatus.INVALID, NO_ANSWER)


async def test_a_crashing_authorizer_leaves_the_next_one_to_answer(
    tmp_path: Path, start_hub: StartHub, caplog: pytest.LogCaptureFixture
) -> None:
    host = PluginHost()
    host.register("accounts", authorizer("accounts", crash))
    host.load_entry_points()
    hub = await start_hub(write_config(tmp_path / "config"), host=host)
    assert await status(hub, "0BADCAFE") is AuthorizationStatus.BLOCKED
    assert await status(hub, "04A1B2C3") is AuthorizationStatus.ACCEPTED
    assert "accounts: hub_authorize failed" in caplog.text


async def test_the_hook_is_given_the_hub_that_asks(hub: Hub) -> None:
    assert hub.plugins is not None
    answer = await hub.plugins.authorize({"id": "04A1B2C3", "type": "ISO14443"}, BAY_1, None)
    assert answer is not None and answer.status is AuthorizationStatus.ACCEPTED


# --- run-time tokens --------------------------------------------------------------------------


async def test_tokens_added_at_run_time_survive_a_restart(
    db_url: str,
    tmp_path: Path,
    start_hub: StartHub,  # db_url first: its database outlives hubs
) -> None:
    config = write_config(tmp_path / "config", db_url=db_url)
    hub = await start_hub(config)
    add = {"id": "CAFE0001", "name": "Guest", "group": "guests", "chargers": [BAY_1]}
    await hub.services.call("allowlist", "add_token", add)
    await hub.services.call("allowlist", "add_token", {"id": "CAFE0002"})
    await hub.services.call("allowlist", "add_token", {"id": "CAFE0003"})
    await hub.services.call("allowlist", "block_token", {"id": "CAFE0002"})
    await hub.services.call("allowlist", "remove_token", {"id": "CAFE0003"})
    await hub.services.call(
        "allowlist", "update_token", {"id": "CAFE0001", "expiry": "2026-06-01T00:00:00Z"}
    )
    before = local_list(hub)
    pseudonym = pseudonymize("CAFE0001", pseudonym_key(hub))
    await hub.stop()

    hub = await start_hub(config)
    assert local_list(hub) == before
    assert pseudonymize("CAFE0001", pseudonym_key(hub)) == pseudonym
    guest = await authorize(hub, IdToken("cafe0001"), BAY_1)
    assert (guest.status, guest.group_id) == (AuthorizationStatus.ACCEPTED, "GUESTS")
    assert guest.expiry == datetime(2026, 6, 1, tzinfo=UTC)
    assert await status(hub, "CAFE0001", BAY_3) is AuthorizationStatus.NOT_AT_THIS_LOCATION
    assert await status(hub, "CAFE0002") is AuthorizationStatus.BLOCKED
    assert await status(hub, "CAFE0003") is AuthorizationStatus.INVALID
    await hub.services.call("allowlist", "unblock_token", {"id": "cafe0002"})
    assert await status(hub, "CAFE0002") is AuthorizationStatus.ACCEPTED


@pytest.mark.parametrize(
    ("service", "data", "message"),
    [
        ("update_token", {"id": "04a1b2c3", "name": "Mine now"}, "configuration.yaml"),
        ("block_token", {"id": "04A1B2C3"}, "configuration.yaml"),
        ("remove_token", {"id": "0BADCAFE"}, "configuration.yaml"),
        ("add_token", {"id": "11223344"}, "configuration.yaml"),
        ("update_token", {"id": "FFFF0000", "blocked": True}, "no token with this id"),
        ("remove_token", {"id": "FFFF0000"}, "no token with this id"),
    ],
)
async def test_configured_tokens_are_read_only_at_run_time(
    hub: Hub, service: str, data: dict[str, Any], message: str
) -> None:
    changed = events(hub, "allowlist_changed")
    with pytest.raises(AllowListError, match=message) as err:
        await hub.services.call("allowlist", service, data)
    assert str(err.value).startswith("id: ")
    assert changed == []
    assert await status(hub, "04A1B2C3") is AuthorizationStatus.ACCEPTED


async def test_adding_a_token_twice_is_refused(hub: Hub) -> None:
    await hub.services.call("allowlist", "add_token", {"id": "CAFE0001"})
    with pytest.raises(AllowListError, match="already in the allow-list"):
        await hub.services.call("allowlist", "add_token", {"id": "cafe0001", "blocked": True})
    assert await status(hub, "CAFE0001") is AuthorizationStatus.ACCEPTED


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"id": 1234}, "id", "must be text"),
        ({"id": "  "}, "id", "must not be empty"),
        ({"id": "A" * 37}, "id", "at most 36"),
        ({"id": "CAFE", "type": "Barcode"}, "type", "unknown token type"),
        ({"id": "CAFE", "expiry": "2027-01-01T00:00:00"}, "expiry", "UTC offset"),
        ({"id": "CAFE", "expiry": "next tuesday"}, "expiry", "ISO 8601"),
        ({"id": "CAFE", "chargers": ["bay 1"]}, "chargers.0", "not an entity id"),
        ({"id": "CAFE", "chargers": []}, "chargers", "at least one charger"),
        ({"id": "CAFE", "blocked": "yes"}, "blocked", "bool"),
        ({"id": "CAFE", "colour": "red"}, "colour", "extra keys"),
    ],
)
async def test_bad_service_data_is_refused_naming_the_field(
    hub: Hub, data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ServiceValidationError, match=message) as err:
        await hub.services.call("allowlist", "add_token", data)
    assert err.value.fields == [field]
    assert f"{field}: " in str(err.value)


@pytest.mark.parametrize(
    ("token", "where", "message"),
    [
        ("    - id: 0123\n", "allowlist.tokens.0.id", "quote it"),
        ('    - id: "ab12"\n    - id: AB12\n', "allowlist.tokens.1.id", "same token id"),
        ("    - id: AB12\n      expiry: 2027-01-01\n", "allowlist.tokens.0.expiry", "time"),
    ],
)
def test_configuration_errors_name_the_line_and_key(
    tmp_path: Path, token: str, where: str, message: str
) -> None:
    config = write_config(tmp_path, "allowlist:\n  tokens:\n" + token)
    with pytest.raises(ConfigInvalid) as err:
        create_hub(config, host=load_plugins())
    (error,) = err.value.errors
    assert where in str(error) and message in str(error)
    assert "configuration.yaml:" in str(error)


# --- the list version and chargers' local lists ----------------------------------------------


async def test_every_change_is_a_new_version_that_survives_a_restart(
    db_url: str, tmp_path: Path, start_hub: StartHub
) -> None:
    config = write_config(tmp_path / "config", db_url=db_url)
    hub = await start_hub(config)
    changed = events(hub, "allowlist_changed")
    first, _ = local_list(hub)
    assert first == 1  # a fresh database with the YAML tokens: the first list

    await hub.services.call("allowlist", "add_token", {"id": "CAFE0001"})
    await hub.services.call("allowlist", "add_token", {"id": "CAFE0002", "group": "fleet"})
    await hub.services.call("allowlist", "block_token", {"id": "CAFE0001"})
    await hub.services.call("allowlist", "block_token", {"id": "CAFE0001"})  # no change
    await hub.services.call("allowlist", "remove_token", {"id": "CAFE0002"})
    assert [e.data["version"] for e in changed] == [2, 3, 4, 5]

    # A charger at version 2 needs two changes: CAFE0001 (now blocked) and CAFE0002 (gone).
    assert local_list_changes(hub, 2) == [
        {
            "id": "CAFE0001",
            "type": "ISO14443",
            "status": "Blocked",
            "expiry": None,
            "group_id": None,
        },
        {"id": "CAFE0002", "type": "ISO14443", "status": None, "expiry": None, "group_id": None},
    ]
    assert local_list_changes(hub, 5) == []
    assert local_list_changes(hub, 9) is None  # a version this hub never gave out
    await hub.stop()

    hub = await start_hub(config)
    assert local_list(hub)[0] == 5
    assert local_list_changes(hub, 4) is None  # the change log starts afresh: full update
    changed = events(hub, "allowlist_changed")
    await hub.services.call("allowlist", "unblock_token", {"id": "CAFE0001"})
    assert [e.data["version"] for e in changed] == [6]
    assert local_list_changes(hub, 5) == [
        {
            "id": "CAFE0001",
            "type": "ISO14443",
            "status": "Accepted",
            "expiry": None,
            "group_id": None,
        }
    ]
    await hub.stop()

    # Editing configuration.yaml is a change too: chargers must fetch the list again.
    write_config(config, TOKENS.replace("blocked: true", "blocked: false"), db_url=db_url)
    hub = await start_hub(config)
    assert local_list(hub)[0] == 7
    assert await status(hub, "0BADCAFE") is AuthorizationStatus.ACCEPTED


async def test_a_chargers_local_list_matches_what_it_would_be_told_online(hub: Hub) -> None:
    version, entries = local_list(hub, BAY_3)
    by_id = {e["id"]: e for e in entries}
    assert by_id["04A1B2C3"] == {
        "id": "04A1B2C3",
        "type": "ISO14443",
        "status": "Accepted",
        "expiry": datetime(2026, 3, 30, 22, 0, tzinfo=UTC),
        "group_id": "FLEET",
    }
    for token_id, entry in by_id.items():
        assert entry["status"] == await status(hub, token_id, BAY_3)
    assert by_id["11223344"]["status"] == "NotAtThisLocation"
    assert local_list(hub, BAY_1)[1][0]["status"] == "Accepted"  # sorted: 04A1B2C3 first

    # The service gives other plugins the same data without importing this one.
    full = await hub.services.call("allowlist", "local_list", {"charger": BAY_3})
    assert full == {"version": version, "update_type": "Full", "entries": entries}
    await hub.services.call("allowlist", "add_token", {"id": "CAFE0001"})
    diff = await hub.services.call(
        "allowlist", "local_list", {"since_version": version, "charger": BAY_3}
    )
    assert diff["update_type"] == "Differential"
    assert diff["version"] == version + 1
    assert [e["id"] for e in diff["entries"]] == ["CAFE0001"]
    stale = await hub.services.call("allowlist", "local_list", {"since_version": 0})
    assert stale["update_type"] == "Full" and len(stale["entries"]) == 4
    unset = await hub.services.call(
        "allowlist", "local_list", {"since_version": None, "charger": None}
    )
    assert unset == {"version": version + 1, "update_type": "Full", "entries": local_list(hub)[1]}
    with pytest.raises(ServiceValidationError, match="since_version"):
        await hub.services.call("allowlist", "local_list", {"since_version": -1})


def only_allowlist_tables(name: str | None, kind: str, _parent: object) -> bool:
    return kind != "table" or bool(name and name.startswith("allowlist_"))


def test_the_tables_are_exactly_what_the_migrations_build(db_url: str) -> None:
    engine = create_recorder_engine(db_url)
    try:
        upgrade(engine)
        upgrade_branch(engine, store.MIGRATIONS, store.BRANCH)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": only_allowlist_tables})
            assert compare_metadata(context, store.metadata) == []
    finally:
        engine.dispose()
