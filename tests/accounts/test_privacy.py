"""A driver's data: exported as JSON (card ids pseudonymized unless an admin asks), and erased,
keeping what a bill needs under the card's pseudonym. The history comes from a real OCPP 1.6
charger, so the card id sits where the hub really puts it (sessions, events, charger states).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ocpp.v16 import call as call16
from sqlalchemy import select

from hub.charging import AuthorizationStatus, IdToken, authorize, pseudonym_key, pseudonymize
from hub.clock import SimClock
from hub.core import Hub
from hub.storage.schema import events, sessions, states
from plugins.accounts import AccountsError
from tests.accounts.support import SEED
from tests.ocpp.support import PASSWORD, charger, running_hub

T0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
OCPP = {"chargers": [{"id": "bay_a", "password": PASSWORD}]}
CARD, APP_TYPE = "CAFE0042", "Central"


def at(clock: SimClock, minutes: float = 0) -> str:
    return (clock.now() + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def history_text(hub: Hub) -> str:
    """Every row of sessions, events and states, as text: what a database dump would show."""
    assert hub.recorder is not None
    await hub.recorder.flush()

    def dump(conn: object) -> str:
        rows = [dict(r) for t in (sessions, events, states)
                for r in conn.execute(select(t)).mappings()]  # type: ignore[attr-defined]  # fmt: skip
        return json.dumps(rows, default=str)

    return await hub.recorder.read(dump)


async def test_export_then_erase_a_driver(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with (
        running_hub(tmp_path, OCPP, clock, accounts=SEED) as hub,
        charger(hub, "bay_a") as cp,
    ):
        call = hub.services.call
        await call("accounts", "create_account", {"id": "kim", "name": "Kim Private",
                                                   "email": "kim@private.example",
                                                   "organisation": "acme"})  # fmt: skip
        await call("accounts", "add_token", {"id": CARD, "account": "kim", "label": "blue"})
        await cp.call(call16.BootNotification(charge_point_vendor="ACME", charge_point_model="W"))
        start = await cp.call(call16.StartTransaction(1, CARD.lower(), 1000, at(clock)))
        assert start.id_tag_info["status"] == "Accepted"
        with pytest.raises(AccountsError, match="still running"):
            await call("accounts", "erase_driver", {"account_id": "kim"})
        await cp.call(call16.StopTransaction(8000, at(clock, 60), start.transaction_id))
        assert CARD in (await history_text(hub)).upper()

        pseudonym = pseudonymize(CARD, pseudonym_key(hub))
        export = await call("accounts", "export_driver", {"account_id": "kim"})
        json.dumps(export)  # plain JSON
        assert export["account"]["email"] == "kim@private.example"
        assert export["organisation"] == {"id": "acme", "name": "ACME Logistics"}
        (token,) = export["tokens"]
        assert (token["id"], token["pseudonym"], token["label"]) == (None, pseudonym, "blue")
        (session,) = export["sessions"]
        assert session["token"] == pseudonym and session["meter_stop_wh"] == 8000
        assert CARD not in json.dumps(export).upper()
        raw = await call("accounts", "export_driver", {"account_id": "kim", "raw_ids": True})
        assert raw["tokens"][0]["id"] == CARD and raw["sessions"][0]["token"] == CARD
        assert [a["kind"] for a in raw["audit"]][:2] == ["account_created", "token_added"]

        erased = await call("accounts", "erase_driver", {"account_id": "kim"})
        marker = f"ERASED-{pseudonym.upper()}"
        assert erased["tokens"] == [marker]
        # The card no longer charges, and chargers' lists drop it.
        assert (await authorize(hub, IdToken(CARD), "charger.bay_a_1")).status is (
            AuthorizationStatus.INVALID
        )
        diff = await call("accounts", "local_list", {"since_version": erased["version"] - 1})
        assert diff["entries"] == [
            {"id": CARD, "type": "ISO14443", "status": None, "expiry": None, "group_id": None}
        ]
        # Nothing personal is left in the history; the bill can still be made.
        text = (await history_text(hub)).upper()
        assert CARD not in text and "KIM@PRIVATE.EXAMPLE" not in text and marker in text
        billing = await call("accounts", "lookup_token", {"id_token": marker})
        assert (billing["account_id"], billing["organisation_id"], billing["plan"]) == (
            "kim", "acme", "fleet"
        )  # fmt: skip
        assert billing["group"] == "ACME-FLEET" and billing["name"] is None
        account = await call("accounts", "get_account", {"id": "kim"})
        assert (account["name"], account["email"], account["status"]) == (None, None, "erased")
        after = await call("accounts", "export_driver", {"account_id": "kim", "raw_ids": True})
        assert after["tokens"] == [] and after["sessions"][0]["token"] == marker
        assert (
            "Kim" not in json.dumps(after) and after["erased_tokens"][0]["pseudonym"] == pseudonym
        )
        # Erased drivers are gone from the everyday list; asked for, they are there.
        listed = await call("accounts", "list_accounts", {})
        assert "kim" not in [a["id"] for a in listed["accounts"]]
        again = await call("accounts", "erase_driver", {"account_id": "kim"})
        assert again["tokens"] == []


async def test_a_configured_driver_is_erased_in_configuration_yaml(tmp_path: Path) -> None:
    clock = SimClock(start=T0)
    async with running_hub(tmp_path, OCPP, clock, accounts=SEED) as hub:
        with pytest.raises(AccountsError, match=r"configuration\.yaml"):
            await hub.services.call("accounts", "erase_driver", {"account_id": "van17"})
        with pytest.raises(AccountsError, match="no account"):
            await hub.services.call("accounts", "export_driver", {"account_id": "nobody"})
