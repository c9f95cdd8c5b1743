"""Sending the plugin's few e-mails: through a `notify.*` service when one is configured, else
through `accounts.smtp` with smtplib in an executor (never on the event loop).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import TYPE_CHECKING, Any

from hub.bus import Context
from hub.notify import Notifications

if TYPE_CHECKING:
    from hub.core import Hub

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


class MailError(RuntimeError):
    """The message could not be handed over; the text never holds the address or the body."""


class Mailer:
    def __init__(self, hub: Hub, notify: str | None, smtp: Mapping[str, Any] | None) -> None:
        self.hub = hub
        self.notify = notify
        self.smtp = smtp

    async def send(
        self, to: str, subject: str, template: str, variables: Mapping[str, str]
    ) -> None:
        """Send `template` with `{{ name }}` placeholders filled from `variables`.

        What a driver typed (a name) only ever arrives as a variable, never as template text:
        the notify service renders its message as a template, and a name like "{{ states }}"
        must stay a name.
        """
        if self.notify is not None:
            name = self.notify.partition(".")[2]
            # Straight to the notifier rather than through the service, so the message (it holds
            # the code) is not recorded with the `call_service` event.
            data = {"title": subject, "message": template, "target": [to]}
            try:
                await Notifications.of(self.hub).send(name, data, Context(), variables)
            except Exception as err:
                raise MailError(f"{self.notify} failed: {type(err).__name__}") from None
            return
        if self.smtp is None:
            raise MailError("no way to send mail is configured")
        message = self._message(to, subject, fill(template, variables))
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, _send_smtp, dict(self.smtp), message)
        except (OSError, smtplib.SMTPException) as err:
            raise MailError(f"SMTP {self.smtp['host']}: {type(err).__name__}: {err}") from None

    def _message(self, to: str, subject: str, body: str) -> EmailMessage:
        assert self.smtp is not None
        message = EmailMessage()
        message["From"] = formataddr((self.hub.name, self.smtp["sender"]))
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(self.hub.now())
        message["Message-ID"] = make_msgid(domain=self.smtp["sender"].rpartition("@")[2])
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(body)
        return message


def fill(template: str, variables: Mapping[str, str]) -> str:
    """`{{ key }}` replaced in one pass: a value is never read as a placeholder itself."""
    return _PLACEHOLDER.sub(lambda m: str(variables.get(m[1], "")), template)


def _send_smtp(conf: dict[str, Any], message: EmailMessage) -> None:
    """Blocking: runs in an executor thread."""
    host, port, timeout = conf["host"], conf["port"], conf["timeout"]
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if conf["security"] == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if conf["security"] == "starttls":
            smtp.starttls(context=context)
        if conf.get("username"):
            smtp.login(conf["username"], conf.get("password") or "")
        smtp.send_message(message)
