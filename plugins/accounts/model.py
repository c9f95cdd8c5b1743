"""Organisations, driver accounts and tokens, and the answer a token gets at a charger and a time.

Everything here is immutable and pure: the directory swaps whole entries, the decision reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.charging.auth import DEFAULT_TOKEN_TYPE, AuthorizationStatus

SOURCE = "accounts"
DAY = 24 * 60
_CONNECTOR = re.compile(r"_\d+$")


@dataclass(frozen=True, slots=True)
class Window:
    """Allowed hours on some weekdays (0 = Monday), in minutes of the local day; an end before
    the start runs past midnight and belongs to the day it starts on."""

    days: tuple[int, ...]
    start: int
    end: int

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Window:
        return cls(tuple(data["days"]), data["start"], data["end"])

    def as_dict(self) -> dict[str, Any]:
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        return {
            "days": [days[d] for d in self.days],
            "start": _hhmm(self.start),
            "end": _hhmm(self.end),
        }

    def end_if_open(self, local: datetime) -> datetime | None:
        """The local end of this window when `local` is inside it, else None."""
        minute, day = local.hour * 60 + local.minute, local.weekday()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        if self.start < self.end:
            if day in self.days and self.start <= minute < self.end:
                return midnight + timedelta(minutes=self.end)
        elif day in self.days and minute >= self.start:
            return midnight + timedelta(days=1, minutes=self.end)
        elif (day - 1) % 7 in self.days and minute < self.end:
            return midnight + timedelta(minutes=self.end)
        return None


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str
    group_id: str | None = None  # the parent id token its tokens carry unless they have their own
    plan: str | None = None
    blocked: bool = False
    from_yaml: bool = False
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "group": self.group_id,
            "plan": self.plan,
            "blocked": self.blocked,
            "source": _source(self.from_yaml),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Account:
    """A driver. `status` pending (registered, not verified), active, disabled or erased."""

    id: str
    name: str | None
    email: str | None = None
    organisation_id: str | None = None
    plan: str | None = None
    status: str = "active"
    from_yaml: bool = False
    verified_at: datetime | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)
    erased_at: datetime | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "organisation": self.organisation_id,
            "plan": self.plan,
            "status": self.status,
            "source": _source(self.from_yaml),
            "verified_at": self.verified_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "erased_at": self.erased_at,
        }


@dataclass(frozen=True, slots=True)
class Token:
    """An RFID card or an app token of an account (or of an organisation: a pool card)."""

    id: str = field(repr=False)  # normalised; never in a repr that may reach a log
    type: str = DEFAULT_TOKEN_TYPE
    kind: str = "rfid"
    account_id: str | None = None
    organisation_id: str | None = None
    label: str | None = None
    group_id: str | None = None
    expiry: datetime | None = None
    blocked: bool = False
    blocked_reason: str | None = None
    max_concurrent: int | None = 1
    chargers: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None
    hours: tuple[Window, ...] | None = None
    from_yaml: bool = False
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], **extra: Any) -> Token:
        """A token from validated YAML or service data (which spells group_id `group`)."""
        hours = data.get("hours")
        return cls(
            id=data["id"],
            type=data.get("type") or DEFAULT_TOKEN_TYPE,
            kind=data.get("kind", "rfid"),
            account_id=data.get("account"),
            organisation_id=data.get("organisation"),
            label=data.get("label"),
            group_id=data.get("group"),
            expiry=data.get("expiry"),
            blocked=data.get("blocked", False),
            max_concurrent=data.get("max_concurrent", 1),
            chargers=_tuple(data.get("chargers")),
            sites=_tuple(data.get("sites")),
            hours=tuple(Window.from_data(w) for w in hours) if hours is not None else None,
            **extra,
        )

    @property
    def shared(self) -> bool:
        """Meant for several vehicles at once (max_concurrent above 1): never a clone."""
        return self.max_concurrent is not None and self.max_concurrent > 1

    def as_dict(self) -> dict[str, Any]:
        """For service results; the caller adds the id (raw, or only its pseudonym)."""
        return {
            "type": self.type,
            "kind": self.kind,
            "account": self.account_id,
            "organisation": self.organisation_id,
            "label": self.label,
            "group": self.group_id,
            "expiry": self.expiry,
            "blocked": self.blocked,
            "blocked_reason": self.blocked_reason,
            "max_concurrent": self.max_concurrent,
            "chargers": _list(self.chargers),
            "sites": _list(self.sites),
            "hours": [w.as_dict() for w in self.hours] if self.hours is not None else None,
            "source": _source(self.from_yaml),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _tuple(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None


def _list(value: tuple[str, ...] | None) -> list[str] | None:
    return list(value) if value is not None else None


def _source(from_yaml: bool) -> str:
    return "configuration.yaml" if from_yaml else "runtime"


@dataclass(frozen=True, slots=True)
class Decision:
    """A token's answer before counting sessions; `cache_until` bounds a charger's cache."""

    status: AuthorizationStatus
    reason: str | None
    group_id: str | None
    cache_until: datetime | None


@dataclass(frozen=True, slots=True)
class Owner:
    account: Account | None
    organisation: Organisation | None


def charger_matches(allowed: str, asked: str) -> bool:
    """A charger entry covers its connectors (`charger.bay_01` covers `charger.bay_01_1`), and a
    station-wide question (`charger.bay_01`, an Authorize before a connector is known) is allowed
    where one of its connectors is."""
    if allowed == asked:
        return True
    if asked.startswith(allowed + "_") and _CONNECTOR.fullmatch(asked[len(allowed) :]):
        return True
    return allowed.startswith(asked + "_") and bool(_CONNECTOR.fullmatch(allowed[len(asked) :]))


def decide(
    token: Token,
    owner: Owner,
    charger: str | None,
    now: datetime,
    tz: ZoneInfo,
    site_path: tuple[str, ...] | None,
) -> Decision:
    """Everything but concurrency. `charger` None means "anywhere" (a local list without a
    charger); `site_path` is the ids of the site nodes above the charger (None: not in the tree).
    """
    account, org = owner.account, owner.organisation
    group = token.group_id or (org.group_id if org else None)
    expiry = token.expiry

    def no(status: AuthorizationStatus, reason: str) -> Decision:
        return Decision(status, reason, group, None)

    if token.blocked:
        return no(
            AuthorizationStatus.BLOCKED,
            f"token blocked: {token.blocked_reason or 'by an administrator'}",
        )
    if account is not None and account.status == "disabled":
        return no(AuthorizationStatus.BLOCKED, f"account {account.id} is disabled")
    if org is not None and org.blocked:
        return no(AuthorizationStatus.BLOCKED, f"organisation {org.id} is blocked")
    if account is not None and account.status != "active":
        return no(AuthorizationStatus.INVALID, f"account {account.id} is {account.status}")
    if expiry is not None and now >= expiry:
        return no(AuthorizationStatus.EXPIRED, f"expired at {expiry.isoformat()}")
    if charger is not None:
        if token.chargers is not None and not any(
            charger_matches(c, charger) for c in token.chargers
        ):
            return no(AuthorizationStatus.NOT_AT_THIS_LOCATION, "not one of the token's chargers")
        if token.sites is not None and not set(token.sites) & set(site_path or ()):
            return no(AuthorizationStatus.NOT_AT_THIS_LOCATION, "not at one of the token's sites")
    cache_until = expiry
    if token.hours is not None:
        local = now.astimezone(tz)
        ends = [e for w in token.hours if (e := w.end_if_open(local)) is not None]
        if not ends:
            return no(AuthorizationStatus.NOT_AT_THIS_TIME, "outside the token's allowed hours")
        # A charger may cache the answer only until the window closes, or it would let the card
        # charge outside its hours from the cache.
        window_end = _aware(max(ends), tz).astimezone(UTC)
        cache_until = window_end if expiry is None else min(expiry, window_end)
    return Decision(AuthorizationStatus.ACCEPTED, None, group, cache_until)


def _aware(local: datetime, tz: ZoneInfo) -> datetime:
    """Local wall time -> aware; a time in a DST gap moves forward, as a clock on the wall does."""
    aware = local.replace(tzinfo=tz)
    back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != local:
        aware = (local + timedelta(hours=1)).replace(tzinfo=tz)
    return aware


def signature(token: Token, owner: Owner) -> tuple[Any, ...]:
    """What a charger's local list depends on: a change here is a new list version."""
    account, org = owner.account, owner.organisation
    return (
        token.type,
        token.blocked,
        token.expiry,
        token.group_id,
        token.chargers,
        token.sites,
        token.hours,
        account.status if account else None,
        org.blocked if org else None,
        org.group_id if org else None,
    )


def list_entry(
    token: Token,
    owner: Owner,
    charger: str | None,
    now: datetime,
    tz: ZoneInfo,
    site_path: tuple[str, ...] | None,
) -> dict[str, Any] | None:
    """The token as a charger's local list carries it; None to leave it out.

    A token with allowed hours is left out: a list cannot say "only 07:00-19:00", so the charger
    must ask the hub (online) or apply its rule for unknown cards (offline).
    """
    if token.hours is not None:
        return None
    decision = decide(token, owner, charger, now, tz, site_path)
    return {
        "id": token.id,
        "type": token.type,
        "status": str(decision.status),
        "expiry": token.expiry.isoformat() if token.expiry else None,
        "group_id": decision.group_id,
    }


def erased_marker(pseudonym: str) -> str:
    """What an erased card's sessions carry instead of its id: stable, and never a real id."""
    return f"ERASED-{pseudonym.upper()}"


def removed_entry(token_id: str, token_type: str) -> dict[str, Any]:
    """A differential local-list change meaning "delete this token" (no status)."""
    return {"id": token_id, "type": token_type, "status": None, "expiry": None, "group_id": None}
