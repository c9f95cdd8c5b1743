"""Self-registration by e-mail against a real SMTP server (aiosmtpd on 127.0.0.1, ephemeral port):
a pending driver, a single-use expiring code by mail, verification, limits, and no code leaks.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from hub.clock import SimClock
from hub.core import Hub
from hub.services import ServiceValidationError
from hub.storage.schema import events as events_table
from plugins.accounts import AccountsError, store
from tests.accounts.conftest import StartHub
from tests.accounts.support import SEED, as_json, write_config

CODE = re.compile(r"\b([A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{5})\b")
TIMEOUT = 10.0


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[list[str], EmailMessage]] = asyncio.Queue()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.put_nowait((list(envelope.rcpt_tos), message))
        return "250 OK"

    async def next(self) -> tuple[list[str], EmailMessage, str]:
        to, message = await asyncio.wait_for(self.messages.get(), TIMEOUT)
        body = message.get_body(("plain",))
        assert body is not None
        return to, message, body.get_content()


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


def registration(port: int, **options: Any) -> dict[str, Any]:
    return {
        **SEED,
        "registration": {"enabled": True, "code_ttl": 900, "per_address": 3, **options},
        "smtp": {"host": "127.0.0.1", "port": port, "sender": "hub@depot.example",
                 "security": "none"},
    }  # fmt: skip


async def call(hub: Hub, service: str, data: dict[str, Any]) -> Any:
    return await hub.services.call("accounts", service, data)


async def test_a_driver_registers_confirms_and_is_active(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = smtp
    caplog.set_level(logging.DEBUG)
    hub = await start_hub(
        write_config(tmp_path, registration(port, verify_url="https://d.example/v"))
    )
    answer = await call(hub, "register", {"email": "Ada@Example.org", "name": "Ada Lovelace"})
    assert answer["status"] == "verification_sent"
    to, message, body = await inbox.next()
    assert to == ["ada@example.org"] and message["Subject"] == "Confirm your e-mail address"
    assert "Ada Lovelace" in body and "test depot" in body
    code = CODE.search(body)[1]  # type: ignore[index]
    assert f"https://d.example/v?email=ada%40example.org&code={code}" in body

    (pending,) = (await call(hub, "list_accounts", {"status": "pending", "search": "ada"}))[
        "accounts"
    ]
    assert pending["status"] == "pending" and pending["email"] == "ada@example.org"
    with pytest.raises(AccountsError, match=r"^code: the code is wrong"):
        await call(hub, "verify", {"email": "ada@example.org", "code": "AAAAA-AAAAA-AAAAA-AAAAA"})
    # Typed as people type: lower case, no dashes.
    verified = await call(
        hub, "verify", {"email": "ada@example.org", "code": code.lower().replace("-", "")}
    )
    assert verified["status"] == "active" and verified["account_id"] == pending["id"]
    account = await call(hub, "get_account", {"id": pending["id"]})
    assert account["status"] == "active" and account["verified_at"] is not None
    with pytest.raises(AccountsError, match=r"^code:"):  # single use
        await call(hub, "verify", {"email": "ada@example.org", "code": code})

    # The code is nowhere: not in the log, not in the recorded events, not in the database.
    assert hub.recorder is not None
    await hub.recorder.flush()
    rows = await hub.recorder.read(lambda c: c.execute(select(events_table.c.data)).all())
    assert code not in caplog.text and code not in as_json([r.data for r in rows])
    assert "ada@example.org" not in as_json([r.data for r in rows]).lower()


async def test_codes_expire_and_die_after_wrong_tries(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int], clock: SimClock
) -> None:
    inbox, port = smtp
    hub = await start_hub(write_config(tmp_path, registration(port, max_attempts=2)))
    await call(hub, "register", {"email": "bo@example.org", "name": "Bo"})
    code = CODE.search((await inbox.next())[2])[1]  # type: ignore[index]
    assert hub.recorder is not None
    stored = await hub.recorder.read(lambda c: c.execute(select(store.codes)).mappings().all())
    assert len(stored) == 1 and stored[0]["code_hash"] != code and len(stored[0]["code_hash"]) == 64
    await clock.advance(901)
    with pytest.raises(AccountsError, match=r"^code:"):
        await call(hub, "verify", {"email": "bo@example.org", "code": code})

    await call(hub, "register", {"email": "bo@example.org", "name": "Bo"})  # a new code
    code = CODE.search((await inbox.next())[2])[1]  # type: ignore[index]
    for _ in range(2):
        with pytest.raises(AccountsError, match=r"^code:"):
            await call(hub, "verify", {"email": "bo@example.org", "code": "WRONG-WRONG"})
    with pytest.raises(AccountsError, match=r"^code:"):  # guessing killed it
        await call(hub, "verify", {"email": "bo@example.org", "code": code})


async def test_requests_are_limited_per_address(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int], clock: SimClock
) -> None:
    inbox, port = smtp
    hub = await start_hub(write_config(tmp_path, registration(port)))
    for _ in range(3):
        await call(hub, "register", {"email": "cy@example.org", "name": "Cy"})
    with pytest.raises(AccountsError, match=r"^email: too many requests"):
        await call(hub, "register", {"email": "CY@example.org", "name": "Cy"})
    await call(hub, "register", {"email": "dee@example.org", "name": "Dee"})  # others are fine
    await clock.advance(3601)
    await call(hub, "register", {"email": "cy@example.org", "name": "Cy"})
    assert inbox.messages.qsize() == 5


async def test_an_address_that_has_an_account_learns_so_by_mail_only(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    hub = await start_hub(write_config(tmp_path, registration(port)))
    before = await call(hub, "list_accounts", {})
    answer = await call(hub, "register", {"email": "van17@acme.example", "name": "Mallory"})
    assert answer["status"] == "verification_sent"  # the same answer as for a new address
    to, _, body = await inbox.next()
    assert to == ["van17@acme.example"] and "already has an account" in body
    assert CODE.search(body) is None
    assert await call(hub, "list_accounts", {}) == before


async def test_registration_is_off_unless_switched_on_and_input_is_checked(
    tmp_path: Path, start_hub: StartHub
) -> None:
    hub = await start_hub(write_config(tmp_path))
    with pytest.raises(AccountsError, match="switched off"):
        await call(hub, "register", {"email": "ed@example.org", "name": "Ed"})
    with pytest.raises(ServiceValidationError, match="email"):
        await call(
            hub, "register", {"email": "ed@example.org\r\nBcc: all@example.org", "name": "E"}
        )
    with pytest.raises(ServiceValidationError, match="name"):
        await call(hub, "register", {"email": "ed@example.org", "name": ""})


async def test_mail_goes_through_a_notify_service_when_configured(
    tmp_path: Path, start_hub: StartHub, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    notify = [{"name": "mail", "platform": "smtp", "host": "127.0.0.1", "port": port,
               "encryption": "none", "sender": "hub@depot.example",
               "recipients": ["ops@depot.example"]}]  # fmt: skip
    accounts = registration(port, notify="notify.mail")
    del accounts["smtp"]
    hub = await start_hub(write_config(tmp_path, accounts, notify=notify))
    # What a driver types is a value in the message, never template text.
    await call(hub, "register", {"email": "fay@example.org", "name": "{{ 7 * 7 }} Fay"})
    to, _, body = await inbox.next()
    assert to == ["fay@example.org"] and "{{ 7 * 7 }} Fay" in body and "49" not in body
    code = CODE.search(body)[1]  # type: ignore[index]
    assert hub.recorder is not None
    await hub.recorder.flush()
    rows = await hub.recorder.read(lambda c: c.execute(select(events_table.c.data)).all())
    assert code not in as_json([r.data for r in rows])
    assert (await call(hub, "verify", {"email": "fay@example.org", "code": code}))[
        "status"
    ] == "active"
