"""Test support for the accounts plugin: hubs built by `create_hub` from a config dir, so the
entry point, the schema and the recorder's database are the real ones; time is the SimClock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hub.bus import Event
from hub.core import Hub

# 2026-03-02 06:00 UTC is a Monday, 07:00 in Europe/Berlin.
SEED: dict[str, Any] = {
    "organisations": [
        {"id": "acme", "name": "ACME Logistics", "group": "ACME-FLEET", "plan": "fleet"},
        {"id": "gone", "name": "Gone Ltd", "blocked": True},
    ],
    "accounts": [
        {"id": "van17", "name": "Van 17 driver", "email": "van17@acme.example",
         "organisation": "acme"},
        {"id": "guest", "name": "Guest Driver", "plan": "guest"},
        {"id": "paused", "name": "Paused Driver", "status": "disabled"},
        {"id": "newbie", "name": "New Driver", "status": "pending"},
    ],
    "tokens": [
        {"id": "04A1B2C3", "account": "van17", "label": "Van 17 card"},
        {"id": "0BADCAFE", "account": "guest", "blocked": True},
        {"id": "0E0E0E0E", "account": "guest", "expiry": "2026-03-31T00:00:00+02:00"},
        {"id": "11223344", "account": "guest", "chargers": ["charger.bay_01"]},
        {"id": "55667788", "account": "guest", "sites": ["panel_a"]},
        {"id": "99AA99AA", "account": "guest", "hours": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "18:00"}]},
        {"id": "NIGHT001", "account": "guest", "hours": [{"start": "22:00", "end": "06:00"}]},
        {"id": "DDDD0001", "account": "paused"},
        {"id": "EEEE0001", "account": "newbie"},
        {"id": "POOL0001", "organisation": "acme", "max_concurrent": 3},
        {"id": "GONE0001", "organisation": "gone"},
    ],
}  # fmt: skip

SITE = {
    "max_current": 400,
    "panels": [
        {"id": "panel_a", "max_current": 250, "circuits": [
            {"id": "c1", "max_current": 63, "chargers": [
                {"entity": "charger.bay_01", "phases": 3},
                {"entity": "charger.bay_02", "phases": 3},
            ]},
        ]},
        {"id": "panel_b", "max_current": 250, "circuits": [
            {"id": "c2", "max_current": 63,
             "chargers": [{"entity": "charger.bay_03", "phases": 3}]},
        ]},
    ],
}  # fmt: skip


def write_config(
    config_dir: Path,
    accounts: dict[str, Any] | None = None,
    db_url: str | None = None,
    **extra: Any,
) -> Path:
    config: dict[str, Any] = {
        "hub": {"name": "test depot", "time_zone": "Europe/Berlin"},
        "accounts": SEED if accounts is None else accounts,
        **extra,
    }
    if db_url is not None:
        config["recorder"] = {"db_url": db_url}
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config_dir


def events(hub: Hub, event_type: str) -> list[Event]:
    seen: list[Event] = []
    hub.bus.listen(event_type, seen.append)
    return seen


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)
