"""Authorizing an id token (RFID card, app, eMAID) to charge: protocol-neutral, default deny.

`authorize()` asks the plugins' `hub_authorize` hooks (the first answer wins); no answer is Invalid.

    result = await authorize(hub, IdToken("04a1b2c3"), "charger.bay_01")
    if result.accepted: ...   # result.expiry, result.group_id for the charger's cache

Token ids never reach a log line or an event as they are: `pseudonymize()` turns them into a keyed
hash (HMAC-SHA256 with a per-installation key in `<config>/.storage/pseudonym.key`), stable for one
installation, so history can follow a card without the history holding the card's number.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.bus import Context

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

EVENT_AUTHORIZATION = "authorization"
DATA_PSEUDONYM_KEY = "pseudonym_key"  # hub.data key of the installation's pseudonym key
PSEUDONYM_KEY_FILE = "pseudonym.key"  # in <config>/.storage/
PSEUDONYM_KEY_BYTES = 32
_MIN_KEY_BYTES = 16  # anything shorter in the key file is damage, not a key
PSEUDONYM_LENGTH = 16  # hex characters: 64 bits, no collisions among any site's cards

DEFAULT_TOKEN_TYPE = "ISO14443"  # what an OCPP 1.6 idTag (which has no type) maps to
# OCPP 2.0.1 IdTokenEnumType, spelled as the protocol spells them.
TOKEN_TYPES = (
    "Central",
    "eMAID",
    "ISO14443",
    "ISO15693",
    "KeyCode",
    "Local",
    "MacAddress",
    "NoAuthorization",
)
_CANONICAL_TYPE = {t.casefold(): t for t in TOKEN_TYPES}


class AuthorizationStatus(enum.StrEnum):
    """OCPP 2.0.1 AuthorizationStatusEnumType values; OCPP 1.6 uses the first five."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"
    NO_CREDIT = "NoCredit"
    NOT_ALLOWED_TYPE_EVSE = "NotAllowedTypeEVSE"
    NOT_AT_THIS_LOCATION = "NotAtThisLocation"
    NOT_AT_THIS_TIME = "NotAtThisTime"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, value: Any) -> AuthorizationStatus:
        """A status from a plugin's answer, in any letter case ("accepted" is Accepted)."""
        if isinstance(value, cls):
            return value
        for status in cls:
            if isinstance(value, str) and status.value.casefold() == value.strip().casefold():
                return status
        raise ValueError(f"unknown authorization status {value!r}")


def normalize_token_id(value: str) -> str:
    """The one spelling of a token id used for matching, storage and pseudonyms.

    OCPP declares id tokens case-insensitive (1.6 CiString20, 2.0.1 IdTokenType), and readers
    differ in the case of the hex digits they send: "04a1b2c3" and " 04A1B2C3" are one card.
    """
    if not isinstance(value, str):
        raise TypeError(f"a token id is a string, not {type(value).__name__}")
    return value.strip().upper()


def normalize_token_type(value: str | None) -> str:
    """Known types in OCPP's spelling ("iso14443" is "ISO14443"); others kept (newer OCPP)."""
    if value is None or not str(value).strip():
        return DEFAULT_TOKEN_TYPE
    text = str(value).strip()
    return _CANONICAL_TYPE.get(text.casefold(), text)


@dataclass(frozen=True, slots=True)
class IdToken:
    """A token as presented at a charger; id and type are normalised, so equal cards are equal.

    The id is left out of repr() so that a token in an exception message does not leak it.
    """

    id: str = field(repr=False)
    type: str = DEFAULT_TOKEN_TYPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", normalize_token_id(self.id))
        object.__setattr__(self, "type", normalize_token_type(self.type))

    def as_hook_arg(self) -> dict[str, str]:
        """What `hub_authorize` receives as `id_token`."""
        return {"id": self.id, "type": self.type}

    @classmethod
    def from_hook_arg(cls, value: IdToken | Mapping[str, Any] | str) -> IdToken:
        """The token back from a hook argument (or a bare 1.6 idTag)."""
        if isinstance(value, IdToken):
            return value
        if isinstance(value, str):
            return cls(value)
        return cls(value["id"], value.get("type") or DEFAULT_TOKEN_TYPE)


@dataclass(frozen=True, slots=True)
class AuthorizationResult:
    """An authorizer's answer. `reason` is for logs and the UI only, never sent to a charger."""

    status: AuthorizationStatus
    expiry: datetime | None = None  # the charger may cache an Accepted answer until then
    group_id: str | None = None  # parent id token: a card of the same group may stop the session
    reason: str | None = None
    source: str | None = None  # the plugin that answered (as it names itself)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", AuthorizationStatus.parse(self.status))
        if self.expiry is not None:
            if not isinstance(self.expiry, datetime):
                raise ValueError(f"expiry must be a datetime, not {type(self.expiry).__name__}")
            if self.expiry.utcoffset() is None:
                raise ValueError("expiry must be timezone-aware")

    @property
    def accepted(self) -> bool:
        return self.status is AuthorizationStatus.ACCEPTED

    @classmethod
    def from_answer(cls, answer: AuthorizationResult | Mapping[str, Any]) -> AuthorizationResult:
        """A result from what a plugin returned: a result, or {"status": ..., "expiry": ...}."""
        if isinstance(answer, AuthorizationResult):
            return answer
        if not isinstance(answer, Mapping):
            raise ValueError(f"an authorization answer is a mapping, not {type(answer).__name__}")
        expiry = answer.get("expiry")
        if isinstance(expiry, str):
            expiry = datetime.fromisoformat(expiry)
        return cls(
            AuthorizationStatus.parse(answer.get("status")),
            expiry=expiry,
            group_id=answer.get("group_id"),
            reason=answer.get("reason"),
            source=answer.get("source"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "group_id": self.group_id,
            "reason": self.reason,
            "source": self.source,
        }


NO_ANSWER = "no authorization plugin knows this token"


async def authorize(
    hub: Hub, token: IdToken, charger: str, context: Context | None = None
) -> AuthorizationResult:
    """Ask the authorizer plugins about `token` on `charger`; nobody answering means Invalid.

    Fires `authorization` {charger, token (pseudonym), status, source} with `context`. A plugin
    that crashes or answers nonsense counts as a denial, never as an acceptance.
    """
    context = context or Context()
    result = AuthorizationResult(AuthorizationStatus.INVALID, reason=NO_ANSWER)
    if hub.plugins is not None:
        try:
            answer = await hub.plugins.authorize(token.as_hook_arg(), charger, context)
        except Exception as err:
            _LOGGER.exception("authorization on %s failed", charger)
            answer = AuthorizationResult(
                AuthorizationStatus.INVALID, reason=f"authorization failed: {type(err).__name__}"
            )
        if answer is not None:
            result = _checked(answer, hub.clock.now())
    pseudonym = pseudonymize(token.id, pseudonym_key(hub))
    hub.bus.fire(
        EVENT_AUTHORIZATION,
        {
            "charger": charger,
            "token": pseudonym,
            "status": str(result.status),
            "source": result.source,
        },
        context,
    )
    _LOGGER.log(
        logging.DEBUG if result.accepted else logging.INFO,
        "token %s on %s: %s by %s (%s)",
        pseudonym,
        charger,
        result.status,
        result.source or "nobody",
        result.reason or "-",
    )
    return result


def _checked(answer: Any, now: datetime) -> AuthorizationResult:
    try:
        result = AuthorizationResult.from_answer(answer)
    except (ValueError, TypeError, KeyError) as err:
        source = answer.get("source") if isinstance(answer, Mapping) else None
        _LOGGER.error("authorizer %s gave a malformed answer: %s", source or "?", err)
        return AuthorizationResult(
            AuthorizationStatus.INVALID, reason=f"malformed answer: {err}", source=source
        )
    if result.accepted and result.expiry is not None and result.expiry <= now:
        # An authorizer that forgot to check its own expiry must not let the card through.
        return replace(
            result,
            status=AuthorizationStatus.EXPIRED,
            reason=f"accepted, but expired at {result.expiry.isoformat()}",
        )
    return result


# --- pseudonyms ---------------------------------------------------------------------------


def pseudonymize(token_id: str, key: bytes) -> str:
    """A stable stand-in for a token id: HMAC-SHA256 under `key`, first 16 hex characters.

    The id is normalised first, so every spelling of one card has one pseudonym.
    """
    digest = hmac.new(key, normalize_token_id(token_id).encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_LENGTH]


def pseudonym_key(hub: Hub) -> bytes:
    """This installation's pseudonym key: from `hub.data`, else `<config>/.storage/pseudonym.key`
    (created on first use, mode 0600). A hub without a config dir gets a key for this run only.
    """
    key: bytes | None = hub.data.get(DATA_PSEUDONYM_KEY)
    if key is None:
        if hub.config_dir is None:
            key = secrets.token_bytes(PSEUDONYM_KEY_BYTES)
        else:
            key = load_or_create_key(hub.config_dir / ".storage" / PSEUDONYM_KEY_FILE)
        hub.data[DATA_PSEUDONYM_KEY] = key
    return key


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, or create it atomically; a second process racing us gets our key."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = None
    if key is not None and len(key) >= _MIN_KEY_BYTES:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            _LOGGER.warning("%s was readable by others; made it private (0600)", path)
            path.chmod(0o600)
        return key
    if key is not None:
        # Pseudonyms change from here on, but a damaged key must not stop authorization.
        aside = path.with_name(path.name + ".corrupt")
        _LOGGER.error("%s is damaged (%d bytes); set aside as %s", path, len(key), aside.name)
        os.replace(path, aside)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(PSEUDONYM_KEY_BYTES))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)  # fails if someone else created it meanwhile: theirs wins
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()
