"""Notifications: `notify.<name>` services over the log and smtp platforms, delivered to a real SMTP
server (aiosmtpd on 127.0.0.1); failures are clear, logged, announced, and the hub keeps running."""

from __future__ import annotations

import asyncio
import email
import logging
import socket
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

import plugins.notify as notify_plugin
from hub.bootstrap import ConfigInvalid, create_hub
from hub.clock import SimClock
from hub.core import CoreState, Hub
from hub.notify import Notification, Notifications, NotifyError
from hub.plugins import PluginHost, hookimpl
from hub.services import ServiceValidationError
from plugins.notify import CONFIG_SCHEMA
from tests.conftest import SIM_START

PASSWORD = "s3cret-Pa55word"


@dataclass
class MailServer:
    """A real SMTP server on an ephemeral port that keeps what it receives."""

    received: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:  # fmt: skip
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers 535 itself when the password is wrong
        return AuthResult(success=auth_data.password.decode() == PASSWORD, handled=False)

    async def start(self) -> None:
        def protocol() -> SMTP:
            return SMTP(
                self, hostname="localhost", authenticator=self.authenticate, auth_require_tls=False
            )

        self.server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def messages(self) -> list[Message]:
        return [email.message_from_bytes(e.original_content) for e in self.received]


@pytest.fixture
async def mail() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    yield server
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "ops_mail", "platform": "smtp", "host": "127.0.0.1", "port": port,
        "encryption": "none", "username": "evhub", "password": PASSWORD,
        "sender": "evhub@depot.example", "sender_name": "Depot hub",
        "recipients": ["ops@depot.example", "night@depot.example"], "timeout": 5, **extra,
    }  # fmt: skip


async def start_hub(tmp_path: Path, notifiers: list[dict[str, Any]], *extra: Any) -> Hub:
    host = PluginHost()
    host.register("notify", notify_plugin)
    for i, plugin in enumerate(extra):
        host.register(f"extra_{i}", plugin)
    hub = Hub(
        tmp_path, clock=SimClock(start=SIM_START), config={"notify": CONFIG_SCHEMA(notifiers)}
    )
    hub.plugins, host.hub = host, hub
    await hub.start()
    return hub


@pytest.fixture
async def stop_later() -> AsyncIterator[list[Hub]]:
    hubs: list[Hub] = []
    yield hubs
    for hub in hubs:
        if hub.state is not CoreState.STOPPED:
            await hub.stop()


async def test_a_mail_reaches_the_smtp_server_with_its_headers_and_body(
    tmp_path: Path, mail: MailServer, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = await start_hub(tmp_path, [smtp(mail.port)])
    stop_later.append(hub)
    hub.states.set("charger.bay_01", "faulted")

    await hub.services.call(
        "notify",
        "ops_mail",
        {
            "title": "Fault at {{ 'bay_01' | upper }}",
            "message": "charger.bay_01 is {{ states('charger.bay_01') }}",
        },
    )

    (envelope,) = mail.received
    assert envelope.mail_from == "evhub@depot.example"
    assert envelope.rcpt_tos == ["ops@depot.example", "night@depot.example"]
    assert mail.logins == ["evhub"]
    (msg,) = mail.messages()
    assert msg["Subject"] == "Fault at BAY_01"
    assert msg["From"] == "Depot hub <evhub@depot.example>"
    assert msg["To"] == "ops@depot.example, night@depot.example"
    assert msg["Date"] == "Mon, 02 Mar 2026 06:00:00 +0000"  # the hub's clock
    assert msg["Message-ID"].endswith("@depot.example>")
    assert msg.get_payload(decode=True).decode().strip() == "charger.bay_01 is faulted"
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(Notifications.of(hub).notifiers["ops_mail"])


async def test_default_service_targets_and_html(
    tmp_path: Path, mail: MailServer, stop_later: list[Hub]
) -> None:
    hub = await start_hub(
        tmp_path, [{"name": "ops_log", "platform": "log"}, smtp(mail.port, default=True)]
    )
    stop_later.append(hub)
    assert hub.services.has("notify", "ops_log") and hub.services.has("notify", "ops_mail")

    await hub.services.call(
        "notify",
        "notify",
        {
            "message": "plain text",
            "target": "fleet@depot.example",
            "data": {"html": "<p>rich <b>text</b></p>"},
        },
    )
    (envelope,) = mail.received
    assert envelope.rcpt_tos == ["fleet@depot.example"]
    (msg,) = mail.messages()
    assert msg["Subject"] == "evhub"  # no title: the hub's name
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_payload()
    assert plain.get_payload(decode=True).decode().strip() == "plain text"
    assert html.get_content_type() == "text/html" and b"<b>text</b>" in html.get_payload(
        decode=True
    )


async def test_the_log_platform_writes_at_its_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    hub = await start_hub(tmp_path, [{"name": "ops_log", "platform": "log", "level": "warning"}])
    stop_later.append(hub)
    with caplog.at_level(logging.INFO):
        await hub.services.call(
            "notify",
            "notify",  # the only notifier is the default
            {"message": "site at {{ 95 }} %", "title": "Peak", "target": ["night shift"]},
        )
    (record,) = [r for r in caplog.records if r.name == "plugins.notify.ops_log"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "[Peak] site at 95 % (to night shift)"


async def test_an_unreachable_server_is_a_clear_logged_error_and_the_hub_runs_on(
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    hub = await start_hub(
        tmp_path, [smtp(closed_port), {"name": "ops_log", "platform": "log", "level": "error"}]
    )
    stop_later.append(hub)
    failures: list[dict[str, Any]] = []
    hub.bus.listen("notify_failed", lambda e: failures.append(dict(e.data)))

    with pytest.raises(NotifyError) as err:
        await hub.services.call("notify", "ops_mail", {"message": "anyone there?"})

    expected = f"notify.ops_mail: not sent: could not send mail via 127.0.0.1:{closed_port}: "
    assert str(err.value).startswith(expected) and "Connection refused" in str(err.value)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        str(err.value)
    ]
    assert failures == [{"notifier": "ops_mail", "error": str(err.value).split("not sent: ")[1]}]
    assert PASSWORD not in caplog.text
    assert hub.state is CoreState.RUNNING
    await hub.services.call("notify", "ops_log", {"message": "still here"})
    assert "still here" in caplog.text


async def test_a_wrong_password_is_reported_without_the_password(
    tmp_path: Path, mail: MailServer, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    hub = await start_hub(tmp_path, [smtp(mail.port, password="wrong-" + PASSWORD)])
    stop_later.append(hub)
    with pytest.raises(NotifyError, match=r"refused the login of 'evhub' \(535\)") as err:
        await hub.services.call("notify", "ops_mail", {"message": "hello"})
    assert mail.received == []
    assert PASSWORD not in str(err.value) and PASSWORD not in caplog.text


async def test_bad_messages_fail_clearly(
    tmp_path: Path, mail: MailServer, stop_later: list[Hub]
) -> None:
    hub = await start_hub(tmp_path, [smtp(mail.port)])
    stop_later.append(hub)
    with pytest.raises(ServiceValidationError, match="message: invalid template"):
        await hub.services.call("notify", "ops_mail", {"message": "{{ broken"})
    with pytest.raises(ServiceValidationError, match="message: required key not provided"):
        await hub.services.call("notify", "ops_mail", {"title": "no message"})
    with pytest.raises(NotifyError, match="ZeroDivisionError: division by zero in template"):
        await hub.services.call("notify", "ops_mail", {"message": "{{ 1 / 0 }}"})
    with pytest.raises(NotifyError, match="'not an address' is not an e-mail address"):
        await hub.services.call("notify", "ops_mail", {"message": "x", "target": "not an address"})
    assert mail.received == []


@pytest.mark.parametrize(
    ("notifiers", "message"),
    [
        ([smtp(25, pasword="typo")], r"extra keys not allowed @ data\[0\]\['pasword'\]"),
        ([{**smtp(25), "recipients": []}], r"give at least one recipient"),
        ([{**smtp(25), "sender": "nobody"}], r"'nobody' is not an e-mail address"),
        (
            [{k: v for k, v in smtp(25).items() if k != "password"}],
            r"give both username and password, or neither",
        ),
        ([smtp(25, encryption="tls")], r"value must be one of"),
        ([{"name": "Ops Log", "platform": "log"}], r"a-z, 0-9 and _ only"),
        ([{"name": "x", "platform": "log", "level": "loud"}], r"value must be one of"),
        ([{"name": "notify", "platform": "log"}], r"`notify` is the default service"),
        ([{"name": "a", "platform": "log"}, {"name": "a", "platform": "log"}], r"a second"),
        (
            [{"name": "a", "platform": "log", "default": True}, smtp(25, default=True)],
            "only one notifier can be the default",
        ),
    ],
)
def test_configuration_errors_name_the_key(notifiers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(vol.Invalid, match=message):
        CONFIG_SCHEMA(notifiers)


async def test_another_plugin_adds_a_platform(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    sent: list[Notification] = []

    class Pager:
        schema = {vol.Required("number"): vol.Match(r"^\+\d+$")}

        def __init__(self, hub: Hub, config: dict[str, Any]) -> None:
            self.number = config["number"]

        async def send(self, notification: Notification) -> None:
            sent.append(notification)

    plugin = types.ModuleType("pager_plugin")
    plugin.hub_notify_providers = hookimpl(lambda register: register("pager", Pager))  # type: ignore[attr-defined]
    notifiers = [
        {"name": "on_call", "platform": "pager", "number": "+3112345"},
        {"name": "bad_pager", "platform": "pager", "number": "12345"},
        {"name": "chat", "platform": "telegram"},
    ]
    with caplog.at_level(logging.ERROR):
        hub = await start_hub(tmp_path, notifiers, plugin)
    stop_later.append(hub)

    await hub.services.call("notify", "on_call", {"message": "{{ 2 + 2 }} chargers down"})
    assert [n.message for n in sent] == ["4 chargers down"]
    assert "notify.bad_pager (pager): invalid configuration: does not match" in caplog.text
    assert "notify.chat: no notify platform 'telegram' (known: log, pager, smtp)" in caplog.text
    assert not hub.services.has("notify", "bad_pager") and not hub.services.has("notify", "chat")
    assert hub.services.has("notify", "notify")

    await hub.stop()
    assert not hub.services.has("notify", "on_call") and not hub.services.has("notify", "notify")


async def test_configured_by_yaml_with_a_secret_password(
    tmp_path: Path, mail: MailServer, caplog: pytest.LogCaptureFixture, stop_later: list[Hub]
) -> None:
    (tmp_path / "secrets.yaml").write_text(f"smtp_password: {PASSWORD}\n")
    (tmp_path / "configuration.yaml").write_text(
        "notify:\n"
        "  - name: ops_mail\n"
        "    platform: smtp\n"
        "    host: 127.0.0.1\n"
        f"    port: {mail.port}\n"
        "    encryption: none\n"
        "    username: evhub\n"
        "    password: !secret smtp_password\n"
        "    sender: evhub@depot.example\n"
        "    recipients: ops@depot.example\n"
    )
    caplog.set_level(logging.DEBUG)
    hub = create_hub(tmp_path, clock=SimClock(start=SIM_START))
    stop_later.append(hub)
    await hub.start()
    await hub.services.call("notify", "notify", {"message": "from YAML"})
    assert [m.get_payload(decode=True).decode().strip() for m in mail.messages()] == ["from YAML"]
    assert PASSWORD not in caplog.text

    (tmp_path / "configuration.yaml").write_text(
        "notify:\n  - name: ops_mail\n    platform: smtp\n    host: x\n    port: 99999\n"
    )
    with pytest.raises(ConfigInvalid, match=r"configuration\.yaml:5: notify\.0\.port: "):
        create_hub(tmp_path, clock=SimClock(start=SIM_START))
