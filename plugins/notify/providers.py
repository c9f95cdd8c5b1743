"""The built-in notify platforms: `log` (a log line at a chosen level) and `smtp` (e-mail through
the standard library's smtplib in a worker thread, so the event loop never waits on a server).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from hub.notify import Notification, NotifyError

if TYPE_CHECKING:
    from hub.core import Hub

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
_LOGIN = "give both username and password, or neither"


def _address(value: Any) -> str:
    text = str(value).strip()
    if "@" not in text or any(c in text for c in " \r\n,<>"):
        raise vol.Invalid(f"{text!r} is not an e-mail address")
    return text


def _addresses(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise vol.Invalid("give at least one recipient")
    return [_address(v) for v in values]


class LogNotifier:
    """Writes each notification to the `plugins.notify.<name>` logger."""

    schema = {vol.Optional("level", default="info"): vol.In(LEVELS)}

    def __init__(self, hub: Hub, config: Mapping[str, Any]) -> None:
        self.logger = logging.getLogger(f"{__package__}.{config['name']}")
        self.level = LEVELS[config.get("level", "info")]

    async def send(self, notification: Notification) -> None:
        title = f"[{notification.title}] " if notification.title else ""
        to = f" (to {', '.join(notification.target)})" if notification.target else ""
        self.logger.log(self.level, "%s%s%s", title, notification.message, to)


class SmtpNotifier:
    """E-mail through an SMTP server. smtplib (standard library) in the default executor rather
    than aiosmtplib: notifications are rare, and it costs no dependency; the socket timeout bounds
    each send. The password is kept out of repr, logs and errors."""

    schema = {
        vol.Required("host"): str,
        vol.Optional("port"): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("encryption", default="starttls"): vol.In(DEFAULT_PORTS),
        vol.Optional("verify_ssl", default=True): bool,
        vol.Inclusive("username", "login", msg=_LOGIN): str,
        vol.Inclusive("password", "login", msg=_LOGIN): str,
        vol.Required("sender"): _address,
        vol.Optional("sender_name"): str,
        vol.Required("recipients"): _addresses,
        vol.Optional("timeout", default=10.0): vol.All(vol.Coerce(float), vol.Range(min=0.1)),
    }

    def __init__(self, hub: Hub, config: Mapping[str, Any]) -> None:
        self.hub = hub
        self.name: str = config["name"]
        self.host: str = config["host"]
        self.encryption: str = config.get("encryption", "starttls")
        self.port: int = config.get("port") or DEFAULT_PORTS[self.encryption]
        self.verify_ssl: bool = config.get("verify_ssl", True)
        self.username: str | None = config.get("username")
        self._password: str | None = config.get("password")
        self.sender: str = config["sender"]
        self.sender_name: str | None = config.get("sender_name")
        self.recipients: list[str] = list(config["recipients"])
        self.timeout: float = config.get("timeout", 10.0)

    def __repr__(self) -> str:
        return f"<SmtpNotifier {self.name} {self.host}:{self.port} {self.encryption}>"

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr((self.sender_name or "", self.sender))
        msg["To"] = ", ".join(notification.target or self.recipients)
        msg["Subject"] = notification.title or self.hub.name
        msg["Date"] = format_datetime(self.hub.now())  # the hub's clock, like everything else
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@{self.sender.rpartition('@')[2]}>"
        msg.set_content(notification.message)
        html = notification.data.get("html")
        if html:
            msg.add_alternative(str(html), subtype="html")
        return msg

    async def send(self, notification: Notification) -> None:
        recipients = [_address(t) for t in notification.target] or self.recipients
        msg = self.message(notification)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._deliver, msg, recipients)

    def _deliver(self, msg: EmailMessage, recipients: list[str]) -> None:
        """Runs in a worker thread: connect, secure, log in, send, quit."""
        context = ssl.create_default_context()
        if not self.verify_ssl:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        where = f"{self.host}:{self.port}"
        try:
            if self.encryption == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.encryption == "starttls":
                    smtp.starttls(context=context)
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password)
                refused = smtp.send_message(msg, self.sender, recipients)
        except smtplib.SMTPAuthenticationError as err:
            raise NotifyError(
                f"{where} refused the login of {self.username!r} ({err.smtp_code})"
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            detail = str(err).replace(self._password, "***") if self._password else str(err)
            raise NotifyError(f"could not send mail via {where}: {detail}") from None
        if refused:
            raise NotifyError(f"{where} refused recipients {sorted(refused)}")
