"""The accounts plugin as the hub's authorizer: the seeded directory in, decisions out.

Given the organisations, drivers and tokens of tests/accounts/support.py on a two-panel site, on
the SimClock (Monday 2026-03-02 07:00 in Berlin), each card gets the answer a site would expect.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.bootstrap import ConfigInvalid, create_hub, load_plugins
from hub.charging import AuthorizationStatus, IdToken, Session, authorize
from hub.charging.auth import NO_ANSWER
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.sessions import SessionStore
from tests.accounts.support import SEED, write_config

S = AuthorizationStatus
BAY_1, BAY_2, BAY_3 = "charger.bay_01_1", "charger.bay_02_1", "charger.bay_03_1"


async def status(hub: Hub, token: str, charger: str = BAY_1) -> AuthorizationStatus:
    return (await authorize(hub, IdToken(token), charger)).status


@pytest.mark.parametrize(
    ("token", "charger", "expected"),
    [
        ("04A1B2C3", BAY_1, S.ACCEPTED),
        ("04a1b2c3 ", BAY_3, S.ACCEPTED),  # readers differ in case and padding: one card
        ("0BADCAFE", BAY_1, S.BLOCKED),  # the token itself
        ("DDDD0001", BAY_1, S.BLOCKED),  # its driver's account is disabled
        ("GONE0001", BAY_1, S.BLOCKED),  # its organisation is blocked
        ("EEEE0001", BAY_1, S.INVALID),  # its driver never verified the address
        ("11223344", "charger.bay_01_2", S.ACCEPTED),  # charger.bay_01 covers its connectors
        ("11223344", "charger.bay_01", S.ACCEPTED),  # a station-wide Authorize there too
        ("11223344", BAY_2, S.NOT_AT_THIS_LOCATION),
        ("55667788", BAY_2, S.ACCEPTED),  # under panel_a
        ("55667788", BAY_3, S.NOT_AT_THIS_LOCATION),  # under panel_b
        ("55667788", "charger.elsewhere_1", S.NOT_AT_THIS_LOCATION),  # not in the site tree
        ("99AA99AA", BAY_1, S.ACCEPTED),  # weekdays 06:00-18:00, it is Monday 07:00
        ("NIGHT001", BAY_1, S.NOT_AT_THIS_TIME),  # 22:00-06:00
    ],
)
async def test_each_seeded_token_gets_its_answer(
    hub: Hub, token: str, charger: str, expected: AuthorizationStatus
) -> None:
    result = await authorize(hub, IdToken(token), charger)
    assert result.status is expected, result.reason
    assert result.source == "accounts"
    assert result.accepted or result.reason  # every refusal says why (for logs and the UI)


async def test_a_card_of_an_organisation_carries_its_group_and_may_be_cached(hub: Hub) -> None:
    van = await authorize(hub, IdToken("04A1B2C3"), BAY_1)
    assert (van.group_id, van.expiry) == ("ACME-FLEET", None)
    pool = await authorize(hub, IdToken("POOL0001"), BAY_1)
    assert pool.accepted and pool.group_id == "ACME-FLEET"


async def test_an_unknown_card_gets_no_answer_so_the_default_deny_applies(hub: Hub) -> None:
    result = await authorize(hub, IdToken("DEADBEEF"), BAY_1)
    assert (result.status, result.reason, result.source) == (S.INVALID, NO_ANSWER, None)


async def test_expiry_and_allowed_hours_follow_the_hub_clock(hub: Hub, clock: SimClock) -> None:
    card = await authorize(hub, IdToken("0E0E0E0E"), BAY_1)
    assert card.accepted and card.expiry == datetime(2026, 3, 30, 22, 0, tzinfo=UTC)
    # Within its hours a card may be cached only until the window closes (18:00 Berlin).
    day = await authorize(hub, IdToken("99AA99AA"), BAY_1)
    assert day.expiry == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)

    await clock.advance(timedelta(hours=11).total_seconds())  # 18:00 Berlin
    assert await status(hub, "99AA99AA") is S.NOT_AT_THIS_TIME
    await clock.advance(timedelta(hours=4).total_seconds())  # 22:00: the night window opens
    night = await authorize(hub, IdToken("NIGHT001"), BAY_1)
    assert night.accepted and night.expiry == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
    await clock.advance(timedelta(hours=7, minutes=59).total_seconds())  # Tuesday 05:59
    assert await status(hub, "NIGHT001") is S.ACCEPTED
    await clock.advance(60)
    assert await status(hub, "NIGHT001") is S.NOT_AT_THIS_TIME

    await clock.advance(timedelta(days=28).total_seconds())  # 2026-03-31 in Berlin
    assert await status(hub, "0E0E0E0E") is S.EXPIRED


async def _session(hub: Hub, token: str, station: str, connector: int = 1, **more: object) -> str:
    assert hub.recorder is not None
    session_id = uuid.uuid4().hex
    await SessionStore(hub.recorder).start_session(
        Session(
            id=session_id,
            charger_id=station,
            connector=connector,
            transaction_id=session_id[:8],
            started_at=hub.now() - timedelta(minutes=5),
            id_tag=token,
            data={"entity_id": f"charger.{station}_{connector}", **more},
        )
    )
    return session_id


async def test_a_card_charging_elsewhere_gets_concurrent_tx(hub: Hub) -> None:
    await _session(hub, "04a1b2c3", "bay_01")  # as the reader spelled it
    refused = await authorize(hub, IdToken("04A1B2C3"), BAY_3)
    assert refused.status is S.CONCURRENT_TX and "charger.bay_01_1" in (refused.reason or "")
    # Another connector of the same station is a second session too ...
    assert await status(hub, "04A1B2C3", "charger.bay_01_2") is S.CONCURRENT_TX
    # ... but the card shown again where it charges (a 2.0.1 event of the same transaction, a
    # card held up to stop, a station-wide Authorize) is the same use.
    assert await status(hub, "04A1B2C3", BAY_1) is S.ACCEPTED
    assert await status(hub, "04A1B2C3", "charger.bay_01") is S.ACCEPTED


async def test_a_pool_card_may_charge_several_cars_up_to_its_limit(hub: Hub) -> None:
    for station in ("bay_01", "bay_02", "bay_03"):
        assert await status(hub, "POOL0001", "charger.far_away_1") is S.ACCEPTED
        await _session(hub, "POOL0001", station)
    assert await status(hub, "POOL0001", "charger.far_away_1") is S.CONCURRENT_TX


async def test_a_refused_session_does_not_count_as_charging(hub: Hub) -> None:
    await _session(hub, "04A1B2C3", "bay_01", authorization="Blocked")
    assert await status(hub, "04A1B2C3", BAY_3) is S.ACCEPTED


@pytest.mark.parametrize(
    ("block", "where", "message"),
    [
        ({"tokens": [{"id": 1234, "account": "a"}]}, "accounts.tokens.0.id", "quote it"),
        ({"tokens": [{"id": "AB 12", "account": "a"}]}, "accounts.tokens.0.id", "only letters"),
        ({"tokens": [{"id": "AB12"}]}, "accounts.tokens.0", "account or an organisation"),
        ({"tokens": [{"id": "AB12", "account": "nobody"}]}, "tokens.0.account", "no account"),
        (
            {"accounts": [{"id": "a", "name": "A"}, {"id": "A", "name": "B"}]},
            "accounts.accounts.1.id",
            "same id",
        ),
        ({"accounts": [{"id": "a", "name": "x\ny"}]}, "accounts.accounts.0.name", "line breaks"),
        ({"accounts": [{"id": "a", "name": "A", "email": "no"}]}, "accounts.0.email", "e-mail"),
        (
            {
                "tokens": [
                    {"id": "A", "organisation": "o", "hours": [{"start": "7", "end": "09:00"}]}
                ]
            },
            "hours.0.start",
            "HH:MM",
        ),
        ({"registration": {"enabled": True}}, "accounts.registration.enabled", "send mail"),
    ],
)
def test_configuration_errors_name_the_key(
    tmp_path: Path, block: dict[str, object], where: str, message: str
) -> None:
    config = write_config(tmp_path, block)
    with pytest.raises(ConfigInvalid) as err:
        create_hub(config, host=load_plugins())
    (error,) = err.value.errors
    assert where in str(error) and message in str(error), str(error)
    assert "configuration.yaml:" in str(error)


def test_the_seed_of_these_tests_is_valid(tmp_path: Path) -> None:
    create_hub(write_config(tmp_path, SEED), host=load_plugins())
