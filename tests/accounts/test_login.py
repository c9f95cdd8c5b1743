"""Driver login codes for the portal (`accounts.login_code` / `accounts.login_verify`) against a
real SMTP server: single use, expiring, dying after wrong tries, telling nobody who is registered.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP

from hub.clock import SimClock
from tests.accounts.conftest import StartHub
from tests.accounts.support import write_config
from tests.accounts.test_registration import Inbox, call, registration

LOGIN_CODE = re.compile(r"\b(\d{8})\b")


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(inbox, hostname="mx.test", loop=loop), "127.0.0.1", 0
    )
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_driver_logs_in_with_an_emailed_code_once(
    tmp_path: Path,
    start_hub: StartHub,
    smtp: tuple[Inbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, port = smtp
    caplog.set_level(logging.DEBUG)
    hub = await start_hub(write_config(tmp_path, registration(port)))
    answer = await call(hub, "login_code", {"email": "Van17@ACME.example"})
    assert answer["status"] == "code_sent"
    to, message, body = await inbox.next()
    assert to == ["van17@acme.example"] and message["Subject"] == "Your login code"
    code = LOGIN_CODE.search(body)[1]  # type: ignore[index]
    assert "Van 17 driver" in body
    wrong = "00000000" if code != "00000000" else "11111111"
    assert await call(hub, "login_verify", {"email": "van17@acme.example", "code": wrong}) is None
    verified = await call(hub, "login_verify", {"email": "van17@acme.example", "code": code})
    assert verified == "van17"
    assert await call(hub, "login_verify", {"email": "van17@acme.example", "code": code}) is None
    assert code not in caplog.text


async def test_unknown_and_inactive_addresses_get_the_same_answer_and_no_mail(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    config = registration(port)
    config["accounts"] = [
        *config["accounts"],
        {"id": "off", "name": "Off", "email": "off@example.org", "status": "disabled"},
    ]
    hub = await start_hub(write_config(tmp_path, config))
    for address in ("nobody@example.org", "off@example.org"):
        answer = await call(hub, "login_code", {"email": address})
        assert answer["status"] == "code_sent"
        assert await call(hub, "login_verify", {"email": address, "code": "12345678"}) is None
    await asyncio.sleep(0.2)
    assert inbox.messages.qsize() == 0


async def test_login_codes_expire_and_die_after_wrong_tries(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int], clock: SimClock
) -> None:
    inbox, port = smtp
    hub = await start_hub(write_config(tmp_path, registration(port, max_attempts=2)))
    email = {"email": "van17@acme.example"}
    await call(hub, "login_code", email)
    code = LOGIN_CODE.search((await inbox.next())[2])[1]  # type: ignore[index]
    await clock.advance(901)  # at most 15 minutes, whatever code_ttl says
    assert await call(hub, "login_verify", {**email, "code": code}) is None

    await call(hub, "login_code", email)
    code = LOGIN_CODE.search((await inbox.next())[2])[1]  # type: ignore[index]
    wrong = "00000000" if code != "00000000" else "11111111"
    for _ in range(2):
        assert await call(hub, "login_verify", {**email, "code": wrong}) is None
    assert await call(hub, "login_verify", {**email, "code": code}) is None  # guessing killed it
