"""What a CALLRESULT acknowledges is on disk: a hub killed with SIGKILL right after answering
StartTransaction and MeterValues still has the session and every acknowledged reading."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.ocpp.support import PASSWORD, basic_auth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_acknowledged_transaction_facts_survive_sigkill(tmp_path: Path) -> None:
    port = _free_port()
    config = {
        "logger": {"default": "info"},
        "ocpp": {"host": "127.0.0.1", "port": port, "ping_interval": 0,
                 "chargers": [{"id": "cp_kill", "password": PASSWORD}]},
        "allowlist": {"tokens": [{"id": "04A1B2C3"}]},
    }  # fmt: skip
    (tmp_path / "configuration.yaml").write_text(yaml.safe_dump(config))
    hub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "run", "-c", str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert hub.stderr is not None
    while b"OCPP listening" not in (line := await asyncio.wait_for(hub.stderr.readline(), 30)):
        assert line, "the hub exited before listening"

    acknowledged: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"ws://127.0.0.1:{port}/ocpp/cp_kill", protocols=["ocpp1.6"],
            headers=basic_auth("cp_kill", PASSWORD),
        ) as ws,
    ):  # fmt: skip

        async def call(n: int, action: str, payload: dict) -> dict:
            await ws.send_str(json.dumps([2, f"m{n}", action, payload]))
            while True:
                frame = json.loads((await ws.receive(timeout=10)).data)
                if frame[0] == 2:  # the hub asking something: decline
                    await ws.send_str(json.dumps([4, frame[1], "NotSupported", "", {}]))
                elif frame[1] == f"m{n}":
                    assert frame[0] == 3, frame
                    return frame[2]

        await call(0, "BootNotification", {"chargePointVendor": "k", "chargePointModel": "9"})
        start = await call(
            1, "StartTransaction",
            {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000,
             "timestamp": "2026-03-02T06:00:00Z"},
        )  # fmt: skip
        tx = start["transactionId"]
        for n in range(2, 42):
            register = str(1000 + n * 250)
            await call(
                n, "MeterValues",
                {"connectorId": 1, "transactionId": tx, "meterValue": [
                    {"timestamp": f"2026-03-02T06:{n:02d}:00Z",
                     "sampledValue": [{"value": register}]}]},
            )  # fmt: skip
            acknowledged.append(register)
        hub.send_signal(signal.SIGKILL)  # no chance to flush anything
    assert await asyncio.wait_for(hub.wait(), 10) == -signal.SIGKILL

    db = sqlite3.connect(tmp_path / "evhub.db")
    (session_id,) = db.execute(
        "select id from sessions where charger_id = 'cp_kill' and transaction_id = ?", (str(tx),)
    ).fetchone()
    values = [
        f"{v:g}"
        for (v,) in db.execute(
            "select value from meter_readings where session_id = ? order by timestamp",
            (session_id,),
        )
    ]
    assert values == acknowledged
