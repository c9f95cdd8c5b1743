"""Allow-list entries, the decision one entry gives for a charger and a time, and their schemas.

The same validators serve configuration.yaml and the services, so both reject the same input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import voluptuous as vol

from hub.charging.auth import (
    DEFAULT_TOKEN_TYPE,
    TOKEN_TYPES,
    AuthorizationResult,
    AuthorizationStatus,
    normalize_token_id,
    normalize_token_type,
)
from hub.states import valid_entity_id
from hub.validators import aware_datetime

SOURCE = "allowlist"
MAX_ID_LENGTH = 36  # OCPP 2.0.1 IdTokenType.idToken
MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One allowed (or blocked) token. `chargers` None means every charger."""

    id: str = field(repr=False)  # normalised; never in a repr that may reach a log
    type: str = DEFAULT_TOKEN_TYPE
    name: str | None = None
    group_id: str | None = None
    expiry: datetime | None = None
    blocked: bool = False
    chargers: tuple[str, ...] | None = None
    from_yaml: bool = False
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], **extra: Any) -> TokenEntry:
        """An entry from validated YAML or service data (which spells group_id `group`)."""
        return cls(
            id=data["id"],
            type=data.get("type", DEFAULT_TOKEN_TYPE),
            name=data.get("name"),
            group_id=data.get("group"),
            expiry=data.get("expiry"),
            blocked=data.get("blocked", False),
            chargers=data.get("chargers"),
            **extra,
        )

    def decide(self, charger: str | None, now: datetime) -> AuthorizationResult:
        """What this entry says about charging on `charger` (None: anywhere) at `now`."""
        status, reason = AuthorizationStatus.ACCEPTED, None
        if self.blocked:
            status, reason = AuthorizationStatus.BLOCKED, "blocked in the allow-list"
        elif self.expiry is not None and now >= self.expiry:
            status, reason = AuthorizationStatus.EXPIRED, f"expired at {self.expiry.isoformat()}"
        elif self.chargers is not None and charger is not None and charger not in self.chargers:
            status = AuthorizationStatus.NOT_AT_THIS_LOCATION
            reason = f"allowed only on {', '.join(self.chargers)}"
        return AuthorizationResult(status, self.expiry, self.group_id, reason, SOURCE)

    def list_entry(self, charger: str | None, now: datetime) -> dict[str, Any]:
        """The entry as a charger's local authorization list carries it."""
        return {
            "id": self.id,
            "type": self.type,
            "status": str(self.decide(charger, now).status),
            "expiry": self.expiry,
            "group_id": self.group_id,
        }

    def as_dict(self) -> dict[str, Any]:
        """For service results and the UI (an administrator's own data, not for logs)."""
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "group": self.group_id,
            "expiry": self.expiry,
            "blocked": self.blocked,
            "chargers": list(self.chargers) if self.chargers is not None else None,
            "source": "configuration.yaml" if self.from_yaml else "runtime",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def removed_entry(token_id: str, token_type: str) -> dict[str, Any]:
    """A differential local-list change meaning "delete this token" (no status)."""
    return {"id": token_id, "type": token_type, "status": None, "expiry": None, "group_id": None}


def fingerprint(entries: Iterable[TokenEntry]) -> str:
    """Changes whenever the YAML tokens change, so an edited configuration bumps the version."""
    rows = sorted(
        [e.id, e.type, e.name, e.group_id, e.expiry.isoformat() if e.expiry else None, e.blocked,
         list(e.chargers) if e.chargers is not None else None]
        for e in entries
    )  # fmt: skip
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


# --- validators ---------------------------------------------------------------------------


def token_id(value: Any) -> str:
    if not isinstance(value, str):
        # YAML reads 0123 as the number 83 and 1234 as 1234: a silent wrong card id.
        raise vol.Invalid(
            "a token id must be text: quote it (unquoted digits are read as a number)"
        )
    normalized = normalize_token_id(value)
    if not normalized:
        raise vol.Invalid("a token id must not be empty")
    if len(normalized) > MAX_ID_LENGTH:
        raise vol.Invalid(f"a token id has at most {MAX_ID_LENGTH} characters")
    return normalized


def token_type(value: Any) -> str:
    canonical = normalize_token_type(value) if isinstance(value, str) else None
    if canonical not in TOKEN_TYPES:
        raise vol.Invalid(f"unknown token type {value!r}; use one of {', '.join(TOKEN_TYPES)}")
    return canonical


def entity_id(value: Any) -> str:
    if not isinstance(value, str) or not valid_entity_id(value):
        raise vol.Invalid(f"{value!r} is not an entity id like charger.bay_01")
    return value


def _chargers(value: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value))  # keeps order, drops repeats


def _or_none(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None clears the field (update_token); anything else meets the validator's own message."""

    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    return validate


NAME = vol.All(str, vol.Length(max=MAX_NAME_LENGTH))
CHARGERS = vol.All(
    [entity_id], vol.Length(min=1, msg="list at least one charger, or leave it out"), _chargers
)

TOKEN_SCHEMA = vol.Schema(
    {
        vol.Required("id"): token_id,
        vol.Optional("type", default=DEFAULT_TOKEN_TYPE): token_type,
        vol.Optional("name"): NAME,
        vol.Optional("group"): token_id,
        vol.Optional("expiry"): aware_datetime,
        vol.Optional("blocked", default=False): bool,
        vol.Optional("chargers"): CHARGERS,
    }
)


def _unique_ids(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token["id"] in seen:
            raise vol.Invalid(
                f"the same token id as tokens.{seen[token['id']]} (ids ignore case)", [index, "id"]
            )
        seen[token["id"]] = index
    return tokens


CONFIG_SCHEMA = vol.Schema(
    {vol.Optional("tokens", default=[]): vol.All([TOKEN_SCHEMA], _unique_ids)}
)

ID_SCHEMA = vol.Schema({vol.Required("id"): token_id})
ADD_SCHEMA = TOKEN_SCHEMA
UPDATE_SCHEMA = vol.Schema(
    {
        vol.Required("id"): token_id,
        vol.Optional("type"): token_type,
        vol.Optional("name"): _or_none(NAME),
        vol.Optional("group"): _or_none(token_id),
        vol.Optional("expiry"): _or_none(aware_datetime),
        vol.Optional("blocked"): bool,
        vol.Optional("chargers"): _or_none(CHARGERS),
    }
)
LOCAL_LIST_SCHEMA = vol.Schema(  # None is the same as leaving a key out
    {
        vol.Optional("since_version"): _or_none(vol.All(int, vol.Range(min=0))),
        vol.Optional("charger"): _or_none(entity_id),
    }
)
