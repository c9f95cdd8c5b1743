"""The admin workflow through `accounts.*` services: what the web UI and the API build on.

Every change is durable (it survives a restart, on SQLite and PostgreSQL), is audited, and moves
the local-list version only when a charger's list may change. Bad input meets clear errors, and
nothing personal reaches the recorded `call_service` events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from hub.charging import AuthorizationStatus, IdToken, authorize, pseudonym_key, pseudonymize
from hub.core import Hub
from hub.services import ServiceValidationError
from hub.storage.migrations import upgrade, upgrade_branch
from hub.storage.schema import create_recorder_engine
from hub.storage.schema import events as events_table
from plugins.accounts import AccountsError, store
from tests.accounts.conftest import StartHub
from tests.accounts.support import SEED, as_json, events, write_config

S = AuthorizationStatus
BAY = "charger.bay_01_1"


async def call(hub: Hub, service: str, data: dict[str, Any] | None = None) -> Any:
    return await hub.services.call("accounts", service, data or {})


async def test_an_admin_sets_up_a_fleet_and_its_cards(hub: Hub) -> None:
    changed = events(hub, "accounts_changed")
    org = await call(hub, "create_organisation", {"name": "Zap Taxis", "group": "zap"})
    org_id = org["organisation"]["id"]
    assert org_id.startswith("org_") and org["organisation"]["group"] == "ZAP"
    driver = await call(
        hub,
        "create_account",
        {"name": "Kim Driver", "email": " Kim@Zap.Example ", "organisation": org_id},
    )
    account = driver["account"]
    assert (account["email"], account["status"]) == ("kim@zap.example", "active")
    assert changed == []  # nothing a charger's list holds has changed yet

    card = await call(hub, "add_token", {"id": "ca fe".replace(" ", ""), "account": account["id"]})
    assert card["token"]["id"] == "CAFE" and card["token"]["group"] is None
    result = await authorize(hub, IdToken("cafe"), BAY)
    assert result.accepted and result.group_id == "ZAP"  # the organisation's group
    app = await call(hub, "add_token", {"kind": "app", "account": account["id"]})
    app_id = app["token"]["id"]
    assert app_id.startswith("APP") and len(app_id) <= 20 and app["token"]["type"] == "Central"
    assert (await authorize(hub, IdToken(app_id, "Central"), BAY)).accepted
    assert [e.data["version"] for e in changed] == [card["version"], app["version"]]

    # The fleet stops paying: every card of the organisation is blocked at once.
    blocked = await call(hub, "update_organisation", {"id": org_id, "blocked": True})
    assert blocked["version"] == app["version"] + 1
    assert (await authorize(hub, IdToken("CAFE"), BAY)).status is S.BLOCKED
    assert (await authorize(hub, IdToken(app_id, "Central"), BAY)).status is S.BLOCKED
    diff = await call(hub, "local_list", {"since_version": app["version"]})
    assert diff["update_type"] == "Differential"
    assert {e["id"]: e["status"] for e in diff["entries"]} == {"CAFE": "Blocked", app_id: "Blocked"}

    listed = await call(hub, "list_accounts", {"organisation": org_id})
    (kim,) = listed["accounts"]
    assert {t["id"] for t in kim["tokens"]} == {None}  # raw ids only when asked for
    assert {t["masked"] for t in kim["tokens"]} == {"****", "****" + app_id[-4:]}
    raw = await call(hub, "list_accounts", {"search": "kim", "raw_ids": True})
    assert {t["id"] for t in raw["accounts"][0]["tokens"]} == {"CAFE", app_id}


async def test_block_unblock_update_remove_and_what_each_changes(hub: Hub) -> None:
    await call(hub, "add_token", {"id": "B10C0001", "account": "guest"})
    v0 = (await call(hub, "local_list"))["version"]
    blocked = await call(hub, "block_token", {"id": "b10c0001", "reason": "lost"})
    assert blocked["token"]["blocked_reason"] == "lost" and blocked["version"] == v0 + 1
    result = await authorize(hub, IdToken("B10C0001"), BAY)
    assert result.status is S.BLOCKED and "lost" in (result.reason or "")
    again = await call(hub, "block_token", {"id": "B10C0001", "reason": "lost"})
    assert again["version"] == v0 + 1  # no change, no new version
    await call(hub, "unblock_token", {"id": "B10C0001"})
    updated = await call(
        hub, "update_token", {"id": "B10C0001", "label": "spare", "chargers": ["charger.bay_03"]}
    )
    assert updated["token"]["label"] == "spare"
    assert (await authorize(hub, IdToken("B10C0001"), BAY)).status is S.NOT_AT_THIS_LOCATION
    await call(hub, "update_token", {"id": "B10C0001", "chargers": None, "label": None})
    assert (await authorize(hub, IdToken("B10C0001"), BAY)).accepted
    removed = await call(hub, "remove_token", {"id": "B10C0001"})
    diff = await call(hub, "local_list", {"since_version": removed["version"] - 1})
    assert diff["entries"] == [
        {"id": "B10C0001", "type": "ISO14443", "status": None, "expiry": None, "group_id": None}
    ]
    assert await call(hub, "lookup_token", {"id_token": "B10C0001"}) is None


async def test_a_configured_card_can_be_blocked_at_run_time_but_not_edited(
    tmp_path: Path, start_hub: StartHub
) -> None:
    config = write_config(tmp_path / "config")
    hub = await start_hub(config)
    await call(hub, "block_token", {"id": "04A1B2C3", "reason": "reported stolen"})
    assert (await authorize(hub, IdToken("04A1B2C3"), BAY)).status is S.BLOCKED
    with pytest.raises(AccountsError, match=r"configuration\.yaml"):
        await call(hub, "update_token", {"id": "04A1B2C3", "label": "x"})
    with pytest.raises(AccountsError, match=r"configuration\.yaml"):
        await call(hub, "remove_token", {"id": "04A1B2C3"})
    with pytest.raises(AccountsError, match=r"configuration\.yaml"):
        await call(hub, "update_account", {"id": "van17", "name": "x"})
    with pytest.raises(AccountsError, match="unblock it there"):
        await call(hub, "unblock_token", {"id": "0BADCAFE"})
    await hub.stop()

    hub = await start_hub(config)  # the block outlives a restart
    assert (await authorize(hub, IdToken("04A1B2C3"), BAY)).status is S.BLOCKED
    await call(hub, "unblock_token", {"id": "04A1B2C3"})
    assert (await authorize(hub, IdToken("04A1B2C3"), BAY)).accepted


async def test_changes_and_versions_survive_a_restart(
    db_url: str, tmp_path: Path, start_hub: StartHub
) -> None:
    config = write_config(tmp_path / "config", db_url=db_url)
    hub = await start_hub(config)
    first = (await call(hub, "local_list"))["version"]
    assert first == store.VERSION_BASE  # never a version another authorizer gave out
    org = await call(hub, "create_organisation", {"id": "zap", "name": "Zap", "plan": "taxi"})
    acct = await call(hub, "create_account", {"id": "kim", "name": "Kim", "organisation": "zap"})
    token = await call(
        hub,
        "add_token",
        {"id": "CAFE0001", "account": "kim", "max_concurrent": None, "sites": ["panel_a"],
         "hours": [{"days": ["sat", "sun"], "start": "08:00", "end": "12:00"}],
         "expiry": "2027-01-01T00:00:00+01:00"},
    )  # fmt: skip
    await hub.stop()

    hub = await start_hub(config)
    assert (await call(hub, "local_list"))["version"] == token["version"]
    kim = await call(hub, "get_account", {"id": "kim", "raw_ids": True})
    assert kim["organisation_info"] == org["organisation"] | {
        "updated_at": kim["organisation_info"]["updated_at"]
    }
    (card,) = kim["tokens"]
    assert card == token["token"] | {"updated_at": card["updated_at"]}
    assert {k: kim[k] for k in acct["account"] if k != "tokens"} == {
        k: v for k, v in acct["account"].items() if k != "tokens"
    }
    assert await call(hub, "lookup_token", {"id_token": "cafe0001"}) == {
        "account_id": "kim", "organisation_id": "zap", "group": None, "plan": "taxi",
        "name": "Kim", "type": "ISO14443", "kind": "rfid", "status": "NotAtThisTime",
        "pseudonym": pseudonymize("CAFE0001", pseudonym_key(hub)),
    }  # fmt: skip
    # Editing the seed in configuration.yaml is a change too: chargers fetch the list again.
    await hub.stop()
    seed = {**SEED, "tokens": [{**t, "blocked": False} for t in SEED["tokens"]]}
    write_config(config, seed, db_url=db_url)
    hub = await start_hub(config)
    assert (await call(hub, "local_list"))["version"] == token["version"] + 1
    assert (await authorize(hub, IdToken("0BADCAFE"), BAY)).accepted


async def test_accounts_refuse_what_does_not_fit(hub: Hub) -> None:
    with pytest.raises(AccountsError, match=r"^email: another account"):
        await call(hub, "create_account", {"name": "X", "email": "VAN17@acme.example"})
    with pytest.raises(AccountsError, match=r"^organisation: no organisation"):
        await call(hub, "create_account", {"name": "X", "organisation": "nope"})
    with pytest.raises(AccountsError, match=r"^id: an account with this id"):
        await call(hub, "create_account", {"id": "guest", "name": "X"})
    with pytest.raises(AccountsError, match=r"^id: this token is already registered"):
        await call(hub, "add_token", {"id": "04a1b2c3", "account": "guest"})
    with pytest.raises(AccountsError, match=r"^account: no account"):
        await call(hub, "add_token", {"id": "CAFE", "account": "nobody"})
    with pytest.raises(AccountsError, match=r"^id: an RFID token needs"):
        await call(hub, "add_token", {"account": "guest"})
    with pytest.raises(AccountsError, match=r"^id: no token"):
        await call(hub, "block_token", {"id": "NOPE"})


@pytest.mark.parametrize(
    ("service", "data", "field", "message"),
    [
        ("add_token", {"id": "CA'FE", "account": "guest"}, "id", "only letters"),
        ("add_token", {"id": "CAFE\n", "account": "a", "x": 1}, "x", "extra keys"),
        ("add_token", {"id": "A" * 37, "account": "guest"}, "id", "at most 36"),
        ("add_token", {"id": "CAFE", "account": "g", "organisation": "o"}, "<owner>", "not both"),
        ("add_token", {"id": "CAFE", "account": "guest", "type": "Nfc"}, "type", "token type"),
        ("add_token", {"id": "CAFE", "account": "g", "chargers": ["bay"]}, "chargers.0", "entity"),
        ("add_token", {"id": "CA", "account": "g", "max_concurrent": 0}, "max_concurrent", "least"),
        ("add_token", {"id": "CAFE", "account": "g", "expiry": "2027-01-01"}, "expiry", "offset"),
        ("create_account", {"name": "<script>\r\nBcc: x@y.z"}, "name", "line breaks"),
        ("create_account", {"name": "A", "email": "a@b"}, "email", "e-mail address"),
        ("create_account", {"name": "A", "id": "Robert'); DROP"}, "id", "1-64 of a-z"),
        ("create_account", {"name": "A", "status": "root"}, "status", "must be one of"),
        ("lookup_token", {"id_token": 42}, "id_token", "must be text"),
        ("local_list", {"since_version": -1}, "since_version", "at least 0"),
    ],
)  # fmt: skip
async def test_bad_service_data_is_refused_naming_the_field(
    hub: Hub, service: str, data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ServiceValidationError, match=message) as err:
        await call(hub, service, data)
    assert field in err.value.fields


async def test_recorded_service_calls_carry_no_card_numbers_or_addresses(hub: Hub) -> None:
    await call(hub, "create_account", {"id": "kim", "name": "Kim Secret", "email": "kim@x.example"})
    await call(hub, "add_token", {"id": "C0FFEE42", "account": "kim"})
    await call(hub, "block_token", {"id": "C0FFEE42"})
    await call(hub, "lookup_token", {"id_token": "C0FFEE42"})
    assert hub.recorder is not None
    await hub.recorder.flush()
    rows = await hub.recorder.read(lambda c: c.execute(select(events_table.c.data)).all())
    text = as_json([r.data for r in rows]).upper()
    assert "C0FFEE42" not in text and "KIM@X.EXAMPLE" not in text and "KIM SECRET" not in text
    pseudonym = pseudonymize("C0FFEE42", pseudonym_key(hub)).upper()
    assert f"TOKEN:{pseudonym}" in text  # the calls themselves are still traceable


def only_accounts_tables(name: str | None, kind: str, _parent: object) -> bool:
    return kind != "table" or bool(name and name.startswith("accounts_"))


def test_the_tables_are_exactly_what_the_migrations_build(db_url: str) -> None:
    engine = create_recorder_engine(db_url)
    try:
        upgrade(engine)
        upgrade_branch(engine, store.MIGRATIONS, store.BRANCH)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": only_accounts_tables})
            assert compare_metadata(context, store.metadata) == []
    finally:
        engine.dispose()
