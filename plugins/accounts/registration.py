"""Self-registration by e-mail: a pending driver, a single-use expiring code by mail, verification.

Codes (104 random bits) are kept hashed, die after wrong tries, and never reach a log or event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from hub.bus import Context
from plugins.accounts import store
from plugins.accounts.admin import Admin
from plugins.accounts.directory import AccountsError, Directory
from plugins.accounts.mail import Mailer, MailError

_LOGGER = logging.getLogger(__name__)

EVENT_REGISTERED = "accounts_driver_registered"
EVENT_VERIFIED = "accounts_driver_verified"
CODE_BYTES = 13  # 104 bits, 20 base32 characters shown in groups of five
WRONG_CODE = "code: the code is wrong, used or expired; ask for a new one"


def new_code() -> str:
    text = base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode()[:20]
    return "-".join(text[i : i + 5] for i in range(0, 20, 5))


def code_hash(code: str) -> str:
    """Hash of a code as typed: case, spaces and dashes do not matter."""
    canonical = "".join(ch for ch in code.upper() if ch.isalnum())
    return hashlib.sha256(canonical.encode()).hexdigest()


class Registration:
    def __init__(
        self, directory: Directory, admin: Admin, conf: Mapping[str, Any], mailer: Mailer
    ) -> None:
        self.d, self.admin, self.conf, self.mailer = directory, admin, conf, mailer
        self.hub = directory.hub
        self._requests: dict[str, deque[datetime]] = {}

    def _limit(self, email: str) -> None:
        now, window = self.hub.now(), timedelta(seconds=self.conf["window"])
        for address in [a for a, q in self._requests.items() if not q or now - q[-1] > window]:
            del self._requests[address]  # forget quiet addresses: memory stays bounded
        times = self._requests.setdefault(email, deque())
        while times and now - times[0] > window:
            times.popleft()
        if len(times) >= self.conf["per_address"]:
            raise AccountsError("email: too many requests for this address; try again later")
        times.append(now)

    async def register(self, email: str, name: str, context: Context) -> dict[str, Any]:
        if not self.conf["enabled"]:
            raise AccountsError("registration is switched off (accounts.registration.enabled)")
        self._limit(email)
        existing = self.d.snap.by_email(email)
        ttl = timedelta(seconds=self.conf["code_ttl"])
        expires = self.hub.now() + ttl
        # The answer is the same whether or not the address has an account already, so the
        # service tells nobody who is registered here; the owner of the address learns by mail.
        answer = {"status": "verification_sent", "expires_at": expires}
        if existing is not None and existing.status != "pending":
            await self._mail(email, "already", name=existing.name or name)
            return answer
        if existing is None:
            created = await self.d.shielded(
                self.admin.add_account(
                    {"name": name, "email": email, "status": "pending"},
                    context,
                    kind="driver_registered",
                )
            )
            account_id = created["account"]["id"]
        else:
            account_id = existing.id
            if existing.name != name:
                await self.admin.update_account({"id": account_id, "name": name}, context)
        code = new_code()
        hashed, now = code_hash(code), self.hub.now()
        await self.d.recorder.write_fact(
            lambda c: store.put_code(c, account_id, hashed, expires, now)
        )
        self.hub.bus.fire(EVENT_REGISTERED, {"account_id": account_id}, context)
        await self._mail(email, "code", name=name, code=code, expires=expires)
        return answer

    async def verify(self, email: str, code: str, context: Context) -> dict[str, Any]:
        account = self.d.snap.by_email(email)
        if account is None or account.status != "pending":
            raise AccountsError(WRONG_CODE)
        row = await self.d.recorder.read(lambda c: store.get_code(c, account.id))
        now = self.hub.now()
        if row is None or row["expires_at"] <= now or row["attempts"] >= self.conf["max_attempts"]:
            if row is not None:
                await self.d.recorder.write_fact(lambda c: store.delete_code(c, account.id))
            raise AccountsError(WRONG_CODE)
        if not hmac.compare_digest(code_hash(code), row["code_hash"]):
            await self.d.recorder.write_fact(lambda c: store.count_attempt(c, account.id))
            _LOGGER.info("accounts: a wrong verification code for account %s", account.id)
            raise AccountsError(WRONG_CODE)
        result = await self.admin.update_account(
            {"id": account.id, "status": "active"},
            context,
            kind="driver_verified",
            also=lambda c: store.delete_code(c, account.id),
            verified_at=now,
        )
        self.hub.bus.fire(EVENT_VERIFIED, {"account_id": account.id}, context)
        return {"status": "active", "account_id": account.id, "version": result["version"]}

    async def _mail(self, email: str, which: str, **values: Any) -> None:
        variables = {"name": values["name"], "hub": self.hub.name, "link": ""}
        if which == "already":
            template = ALREADY
        else:
            template = CODE_MAIL
            local = values["expires"].astimezone(self.hub.time_zone)
            variables |= {"code": values["code"], "until": f"{local:%Y-%m-%d %H:%M %Z}"}
            if self.conf.get("verify_url"):
                url = self.conf["verify_url"]
                sep = "&" if "?" in url else "?"
                link = f"{url}{sep}email={quote(email)}&code={quote(values['code'])}"
                variables["link"] = f"Or open {link}\n"
        try:
            await self.mailer.send(email, self.conf["subject"], template, variables)
        except MailError as err:
            _LOGGER.error("accounts: verification mail not sent: %s", err)
            raise AccountsError("email: the message could not be sent; try again later") from None


# Placeholders are filled from variables, never pasted into the text (see Mailer.send).
CODE_MAIL = """Hello {{ name }},

your code to confirm this address at {{ hub }} is

    {{ code }}

{{ link }}It can be used once, until {{ until }}.

If you did not ask for it, ignore this message."""

ALREADY = """Hello {{ name }},

someone (perhaps you) asked to register this address at {{ hub }}. It already has an account,
so nothing was changed.

If that was not you, ignore this message."""
