"""E-mailing invoices: through a `notify.<name>` service when the notify plugin offers one,
else with the standard library's smtplib in an executor (never on the event loop).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MailSettings:
    sender: str
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged
    security: str = "none"  # none | starttls | tls
    timeout: float = 30.0
    notify_service: str | None = None  # "notify.billing_mail": used when it is registered
    bcc: str | None = None

    @classmethod
    def from_config(cls, conf: Mapping[str, Any]) -> MailSettings:
        return cls(**{k: v for k, v in conf.items() if k in cls.__dataclass_fields__})


def build_message(
    settings: MailSettings,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    attachments: list[tuple[str, str, bytes]],
    date: Any,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.sender, to, subject
    msg["Date"] = format_datetime(date)  # the hub clock's time, not the machine's
    msg["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    if settings.bcc:
        msg["Bcc"] = settings.bcc
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def _send_blocking(settings: MailSettings, msg: EmailMessage) -> None:
    if settings.security == "tls":
        ctx = ssl.create_default_context()
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=ctx
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(msg)


async def send(
    hub: Hub,
    settings: MailSettings,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> str:
    """Send one message; returns how ("notify.<name>" or "smtp"). Raises on failure."""
    attachments = attachments or []
    if settings.notify_service:
        domain, _, name = settings.notify_service.partition(".")
        if hub.services.has(domain, name):
            await hub.services.call(
                domain,
                name,
                {
                    "title": subject,
                    "message": text,
                    "target": [to],
                    "data": {
                        "html": html,
                        "attachments": [
                            {
                                "filename": f,
                                "content_type": t,
                                "content_base64": base64.b64encode(c).decode("ascii"),
                            }
                            for f, t, c in attachments
                        ],
                    },
                },
            )
            return settings.notify_service
        _LOGGER.info("%s is not available; sending with smtplib", settings.notify_service)
    msg = build_message(settings, to, subject, text, html, attachments, hub.clock.now())
    await asyncio.get_running_loop().run_in_executor(None, _send_blocking, settings, msg)
    return "smtp"
