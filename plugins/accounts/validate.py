"""Validators and schemas of the accounts plugin: configuration.yaml and every service share them.

Personal values in service data become `Redacted`: recorded events and logs never show them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import voluptuous as vol

from hub.charging.auth import DEFAULT_TOKEN_TYPE, TOKEN_TYPES, normalize_token_type
from hub.validators import aware_datetime

MAX_ID_LENGTH = 36  # OCPP 2.0.1 IdTokenType.idToken
MAX_TEXT = 255
MAX_EMAIL = 254  # RFC 5321 path limit
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("rfid", "app")
STATUSES = ("pending", "active", "disabled")

# Printable characters card readers, eMAIDs (DE-ABC-C12345678-X), key codes and MAC addresses use.
# Quotes, backslashes, spaces and control characters are refused: they are never part of a real
# token and only ever arrive to break a log line, a CSV export or a query.
_TOKEN_CHARS = re.compile(r"[A-Z0-9*_.:=+/@#-]+")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_HHMM = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


class Redacted:
    """A value that shows itself as `shown` in events, logs and reprs; `value` is the real one."""

    __slots__ = ("shown", "value")

    def __init__(self, value: Any, shown: str = "<redacted>") -> None:
        self.value, self.shown = value, shown

    def __str__(self) -> str:
        return self.shown

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redacted) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def plain(data: Any) -> Any:
    """Service data with every Redacted value unwrapped (what a handler works with)."""
    if isinstance(data, Redacted):
        return data.value
    if isinstance(data, Mapping):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(plain(v) for v in data)
    return data


# --- single values ---------------------------------------------------------------------------


def token_id(value: Any) -> str:
    if not isinstance(value, str):
        # YAML reads 0123 as the number 83 and 1234 as 1234: a silent wrong card id.
        raise vol.Invalid(
            "a token id must be text: quote it (unquoted digits are read as a number)"
        )
    normalized = value.strip().upper()
    if not normalized:
        raise vol.Invalid("a token id must not be empty")
    if len(normalized) > MAX_ID_LENGTH:
        raise vol.Invalid(f"a token id has at most {MAX_ID_LENGTH} characters")
    if not _TOKEN_CHARS.fullmatch(normalized):
        raise vol.Invalid("a token id may hold only letters, digits and * _ . : = + / @ # -")
    return normalized


def token_type(value: Any) -> str:
    canonical = normalize_token_type(value) if isinstance(value, str) else None
    if canonical not in TOKEN_TYPES:
        raise vol.Invalid(f"unknown token type; use one of {', '.join(TOKEN_TYPES)}")
    return canonical


def slug(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or not _SLUG.fullmatch(text):
        raise vol.Invalid("an id is 1-64 of a-z 0-9 _ - and starts with a letter or digit")
    return text


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("expected text")
    cleaned = value.strip()
    if not cleaned:
        raise vol.Invalid("must not be empty")
    if len(cleaned) > MAX_TEXT:
        raise vol.Invalid(f"at most {MAX_TEXT} characters")
    if _CONTROL.search(cleaned):
        raise vol.Invalid("line breaks and control characters are not allowed")
    return cleaned


def email(value: Any) -> str:
    """An address in one spelling: trimmed and lower-cased, so one person is one account."""
    if not isinstance(value, str):
        raise vol.Invalid("expected an e-mail address")
    cleaned = value.strip().lower()
    if len(cleaned) > MAX_EMAIL or not _EMAIL.fullmatch(cleaned) or "." not in cleaned[-64:]:
        raise vol.Invalid("not an e-mail address like driver@example.com")
    return cleaned


_ENTITY = re.compile(r"charger\.[a-z0-9_]{1,250}")


def charger_id(value: Any) -> str:
    if not isinstance(value, str) or not _ENTITY.fullmatch(value):
        raise vol.Invalid("expected a charger entity id like charger.bay_01")
    return value


def _minutes(value: Any) -> int:
    match = _HHMM.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise vol.Invalid("a time of day is HH:MM (quote it in YAML), 00:00 to 24:00")
    minutes = int(match[1]) * 60 + int(match[2])
    if minutes > 24 * 60:
        raise vol.Invalid("a time of day is at most 24:00")
    return minutes


def _day(value: Any) -> int:
    key = value.strip().lower()[:3] if isinstance(value, str) else None
    if key not in DAYS:
        raise vol.Invalid(f"a day is one of {', '.join(DAYS)}")
    return DAYS.index(key)


def _window(value: dict[str, Any]) -> dict[str, Any]:
    if value["start"] == value["end"] or value["start"] == 24 * 60:
        raise vol.Invalid("a window needs start before end (end before start crosses midnight)")
    return {"days": sorted(set(value["days"])), "start": value["start"], "end": value["end"]}


WINDOW = vol.All(
    {
        vol.Optional("days", default=list(DAYS)): vol.All([_day], vol.Length(min=1)),
        vol.Required("start"): _minutes,
        vol.Required("end"): _minutes,
    },
    _window,
)


def _unique(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


def _or_none(validator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """None clears a field in an update; anything else meets the validator's own message."""

    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    return validate


TEXT = vol.All(text)
PLAN = vol.All(text, vol.Length(max=64))
CHARGERS = vol.All(
    [charger_id], vol.Length(min=1, msg="list at least one, or leave it out"), _unique
)
SITES = vol.All([slug], vol.Length(min=1, msg="list at least one, or leave it out"), _unique)
HOURS = vol.All([WINDOW], vol.Length(min=1, max=14, msg="1 to 14 windows, or leave it out"))
_BOTH = "a token belongs to an account or to an organisation, not both"
MAX_CONCURRENT = vol.All(int, vol.Range(min=1, max=100))

# --- configuration.yaml ------------------------------------------------------------------------

ORGANISATION = {
    vol.Required("id"): slug,
    vol.Required("name"): TEXT,
    vol.Optional("group"): token_id,
    vol.Optional("plan"): PLAN,
    vol.Optional("blocked", default=False): bool,
}
ACCOUNT = {
    vol.Required("id"): slug,
    vol.Required("name"): TEXT,
    vol.Optional("email"): email,
    vol.Optional("organisation"): slug,
    vol.Optional("plan"): PLAN,
    vol.Optional("status", default="active"): vol.In(STATUSES),
}
TOKEN_LIMITS = {
    vol.Optional("max_concurrent", default=1): vol.Any(None, MAX_CONCURRENT),
    vol.Optional("chargers"): CHARGERS,
    vol.Optional("sites"): SITES,
    vol.Optional("hours"): HOURS,
}
TOKEN = {
    vol.Required("id"): token_id,
    vol.Optional("type", default=DEFAULT_TOKEN_TYPE): token_type,
    vol.Optional("kind", default="rfid"): vol.In(KINDS),
    vol.Exclusive("account", "owner", msg=_BOTH): slug,
    vol.Exclusive("organisation", "owner", msg=_BOTH): slug,
    vol.Optional("label"): TEXT,
    vol.Optional("group"): token_id,
    vol.Optional("expiry"): aware_datetime,
    vol.Optional("blocked", default=False): bool,
    **TOKEN_LIMITS,
}


def _duplicates(items: list[dict[str, Any]], key: str, what: str) -> None:
    seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        value = item.get(key)
        if value is None:
            continue
        if value in seen:
            raise vol.Invalid(
                f"the same {what} as item {seen[value]} (case is ignored)", [index, key]
            )
        seen[value] = index


def _owner(token: dict[str, Any]) -> dict[str, Any]:
    if "account" not in token and "organisation" not in token:
        raise vol.Invalid("a token belongs to an account or an organisation: name one")
    return token


def _check_config(conf: dict[str, Any]) -> dict[str, Any]:
    """Ids unique, and seeded tokens and accounts refer only to seeded owners."""
    orgs, accounts, tokens = conf["organisations"], conf["accounts"], conf["tokens"]
    checks = (
        ("organisations", "id", "id"),
        ("accounts", "id", "id"),
        ("accounts", "email", "e-mail"),
        ("tokens", "id", "token id"),
    )
    for block, key, what in checks:
        try:
            _duplicates(conf[block], key, what)
        except vol.Invalid as err:
            raise vol.Invalid(err.msg, [block, *err.path]) from None
    org_ids, account_ids = {o["id"] for o in orgs}, {a["id"] for a in accounts}
    for index, account in enumerate(accounts):
        if account.get("organisation") not in (None, *org_ids):
            raise vol.Invalid(
                "no organisation with this id under accounts.organisations",
                ["accounts", index, "organisation"],
            )
    for index, token in enumerate(tokens):
        for key, known in (("account", account_ids), ("organisation", org_ids)):
            if key in token and token[key] not in known:
                raise vol.Invalid(f"no {key} with this id in this block", ["tokens", index, key])
    return conf


_SMTP = {
    vol.Required("host"): str,
    vol.Optional("port", default=587): vol.All(int, vol.Range(min=1, max=65535)),
    vol.Required("sender"): email,
    vol.Optional("username"): str,
    vol.Optional("password"): str,
    vol.Optional("security", default="starttls"): vol.In(["starttls", "tls", "none"]),
    vol.Optional("timeout", default=20.0): vol.All(vol.Coerce(float), vol.Range(min=1, max=120)),
}
_REGISTRATION = {
    vol.Optional("enabled", default=False): bool,
    vol.Optional("code_ttl", default=1800): vol.All(int, vol.Range(min=60, max=7 * 86400)),
    vol.Optional("per_address", default=3): vol.All(int, vol.Range(min=1, max=100)),
    vol.Optional("window", default=3600): vol.All(int, vol.Range(min=60, max=7 * 86400)),
    vol.Optional("max_attempts", default=5): vol.All(int, vol.Range(min=1, max=20)),
    vol.Optional("notify"): vol.Match(r"^notify\.[a-z0-9_]+$", msg="a service like notify.email"),
    vol.Optional("verify_url"): vol.Match(r"^https?://\S+$", msg="an http(s) URL"),
    vol.Optional("subject", default="Confirm your e-mail address"): TEXT,
}


def _mailer(conf: dict[str, Any]) -> dict[str, Any]:
    reg = conf["registration"]
    if reg["enabled"] and "notify" not in reg and "smtp" not in conf:
        raise vol.Invalid(
            "registration needs a way to send mail: set notify or accounts.smtp",
            ["registration", "enabled"],
        )
    return conf


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        {
            vol.Optional("auto_block_clones", default=False): bool,
            vol.Optional("registration", default={}): _REGISTRATION,
            vol.Optional("smtp"): _SMTP,
            vol.Optional("organisations", default=[]): [ORGANISATION],
            vol.Optional("accounts", default=[]): [ACCOUNT],
            vol.Optional("tokens", default=[]): [vol.All(TOKEN, _owner)],
        },
        _check_config,
        _mailer,
    )
)


# --- services ----------------------------------------------------------------------------------


def service_schemas(hide_token: Callable[[str], str]) -> dict[str, vol.Schema]:
    """Schemas of every service; `hide_token` turns a token id into what events may show."""

    def tok(value: Any) -> Redacted:
        normalized = token_id(value)
        return Redacted(normalized, f"token:{hide_token(normalized)}")

    def personal(validator: Callable[[Any], Any]) -> Callable[[Any], Redacted]:
        return lambda value: Redacted(validator(value))

    name, mail = personal(text), personal(email)
    opt = _or_none
    raw_ids = {vol.Optional("raw_ids", default=False): bool}
    account_id = {vol.Required("account_id"): slug}
    token_fields = {
        vol.Optional("type"): token_type,
        vol.Optional("label"): opt(name),
        vol.Optional("group"): opt(tok),
        vol.Optional("expiry"): opt(aware_datetime),
        vol.Optional("max_concurrent"): opt(MAX_CONCURRENT),
        vol.Optional("chargers"): opt(CHARGERS),
        vol.Optional("sites"): opt(SITES),
        vol.Optional("hours"): opt(HOURS),
    }
    return {
        "create_organisation": vol.Schema(
            {
                vol.Optional("id"): slug,
                vol.Required("name"): name,
                vol.Optional("group"): tok,
                vol.Optional("plan"): PLAN,
                vol.Optional("blocked", default=False): bool,
            }
        ),
        "update_organisation": vol.Schema(
            {
                vol.Required("id"): slug,
                vol.Optional("name"): name,
                vol.Optional("group"): opt(tok),
                vol.Optional("plan"): opt(PLAN),
                vol.Optional("blocked"): bool,
            }
        ),
        "create_account": vol.Schema(
            {
                vol.Optional("id"): slug,
                vol.Required("name"): name,
                vol.Optional("email"): mail,
                vol.Optional("organisation"): slug,
                vol.Optional("plan"): PLAN,
                vol.Optional("status", default="active"): vol.In(STATUSES),
            }
        ),
        "update_account": vol.Schema(
            {
                vol.Required("id"): slug,
                vol.Optional("name"): name,
                vol.Optional("email"): opt(mail),
                vol.Optional("organisation"): opt(slug),
                vol.Optional("plan"): opt(PLAN),
                vol.Optional("status"): vol.In(STATUSES),
            }
        ),
        "add_token": vol.Schema(
            vol.All(
                {
                    vol.Optional("id"): tok,
                    vol.Optional("kind", default="rfid"): vol.In(KINDS),
                    vol.Exclusive("account", "owner", msg=_BOTH): slug,
                    vol.Exclusive("organisation", "owner", msg=_BOTH): slug,
                    vol.Optional("blocked", default=False): bool,
                    **token_fields,
                },
                _owner,
            )
        ),
        "update_token": vol.Schema({vol.Required("id"): tok, **token_fields}),
        "block_token": vol.Schema({vol.Required("id"): tok, vol.Optional("reason"): TEXT}),
        "unblock_token": vol.Schema({vol.Required("id"): tok}),
        "remove_token": vol.Schema({vol.Required("id"): tok}),
        "lookup_token": vol.Schema({vol.Required("id_token"): tok}),
        "get_account": vol.Schema({vol.Required("id"): slug, **raw_ids}),
        "list_accounts": vol.Schema(
            {
                vol.Optional("organisation"): slug,
                vol.Optional("status"): vol.In([*STATUSES, "erased"]),
                vol.Optional("search"): name,
                **raw_ids,
            }
        ),
        "export_driver": vol.Schema({**account_id, **raw_ids}),
        "erase_driver": vol.Schema(account_id),
        "register": vol.Schema({vol.Required("email"): mail, vol.Required("name"): name}),
        "verify": vol.Schema(
            {
                vol.Required("email"): mail,
                vol.Required("code"): personal(vol.All(str, vol.Length(min=1, max=128))),
            }
        ),
        "login_code": vol.Schema({vol.Required("email"): mail}),
        "login_verify": vol.Schema(
            {
                vol.Required("email"): mail,
                vol.Required("code"): personal(vol.All(str, vol.Length(min=1, max=128))),
            }
        ),
        "local_list": vol.Schema(
            {  # None is the same as leaving a key out
                vol.Optional("since_version"): opt(vol.All(int, vol.Range(min=0))),
                vol.Optional("charger"): opt(charger_id),
            }
        ),
    }
