"""Driver login by e-mail for the driver portal: `accounts.login_code` mails a single-use 8-digit
code, `accounts.login_verify` checks it and answers the account id (or None).

Codes share the registration machinery: kept only as a SHA-256 hash in the same table (an active
account never has a registration code pending), die after `max_attempts` wrong tries, expire,
and requests count against the same per-address limit. Never logged, never in an event.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any

from hub.bus import Context
from plugins.accounts import store
from plugins.accounts.directory import AccountsError
from plugins.accounts.mail import MailError
from plugins.accounts.registration import Registration, code_hash

_LOGGER = logging.getLogger(__name__)

DIGITS = 8
MAX_TTL = 900  # s: a login code is good for 15 minutes at most (code_ttl when shorter)
SUBJECT = "Your login code"


def new_login_code() -> str:
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


class Login:
    def __init__(self, registration: Registration) -> None:
        self.reg = registration
        self.d, self.hub, self.conf = registration.d, registration.hub, registration.conf

    async def send(self, email: str, context: Context) -> dict[str, Any]:
        """Mail a code to an active account's address; the answer is the same for any address,
        so the service tells nobody who has an account."""
        self.reg._limit(email)
        ttl = timedelta(seconds=min(self.conf["code_ttl"], MAX_TTL))
        now = self.hub.now()
        expires = now + ttl
        answer = {"status": "code_sent", "expires_at": expires}
        account = self.d.snap.by_email(email)
        if account is None or account.status != "active":
            return answer
        code = new_login_code()
        hashed = code_hash(code)
        await self.d.recorder.write_fact(
            lambda c: store.put_code(c, account.id, hashed, expires, now)
        )
        local = expires.astimezone(self.hub.time_zone)
        variables = {
            "name": account.name or "",
            "hub": self.hub.name,
            "code": code,
            "until": f"{local:%Y-%m-%d %H:%M %Z}",
        }
        try:
            await self.reg.mailer.send(email, SUBJECT, LOGIN_MAIL, variables)
        except MailError as err:
            _LOGGER.error("accounts: login code mail not sent: %s", err)
            raise AccountsError("email: the message could not be sent; try again later") from None
        return answer

    async def verify(self, email: str, code: str) -> str | None:
        """The account id when the code is right (it is used up), else None."""
        account = self.d.snap.by_email(email)
        if account is None or account.status != "active":
            return None
        row = await self.d.recorder.read(lambda c: store.get_code(c, account.id))
        now = self.hub.now()
        if row is None:
            return None
        if row["expires_at"] <= now or row["attempts"] >= self.conf["max_attempts"]:
            await self.d.recorder.write_fact(lambda c: store.delete_code(c, account.id))
            return None
        if not hmac.compare_digest(code_hash(code), row["code_hash"]):
            await self.d.recorder.write_fact(lambda c: store.count_attempt(c, account.id))
            _LOGGER.info("accounts: a wrong login code for account %s", account.id)
            return None
        await self.d.recorder.write_fact(lambda c: store.delete_code(c, account.id))
        return account.id


# Placeholders are filled from variables, never pasted into the text (see Mailer.send).
LOGIN_MAIL = """Hello {{ name }},

your code to log in to the driver portal of {{ hub }} is

    {{ code }}

It can be used once, until {{ until }}.

If you did not ask for it, ignore this message."""
