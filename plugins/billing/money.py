"""Money as `decimal.Decimal`: parsing, the one rounding rule, minor units and formatting.

Amounts are rounded to the currency's minor unit half-up (away from zero), once per line.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import voluptuous as vol

ZERO = Decimal(0)
HUNDRED = Decimal(100)
MWH = Decimal("0.001")  # Wh are kept to the mWh, as derive_energy rounds them

# ISO 4217 minor units where they are not 2; everything else has cents.
_EXPONENT = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-exponent(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """The rounding rule of every amount on a CDR or an invoice: half-up to the minor unit.

    Half-up is commercial rounding (what tax authorities and customers expect to recompute by
    hand); for a negative amount it rounds away from zero, so a credit mirrors its charge.
    """
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """An amount in the currency's minor unit (cents), as payment APIs want it."""
    scaled = round_money(amount, currency).scaleb(exponent(currency))
    return int(scaled.to_integral_value())


def from_minor(value: int, currency: str) -> Decimal:
    return Decimal(value).scaleb(-exponent(currency)).quantize(quantum(currency))


def dec(value: Any) -> Decimal:
    """A Decimal from configuration or JSON: str, int or Decimal; a float goes through its repr.

    YAML reads `0.39` as a float; its shortest repr is the text the user wrote, so nothing of
    the binary approximation reaches an amount.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, float):
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


def wh(value: float | Decimal) -> Decimal:
    """Energy in Wh from a reading's float, exact to the mWh."""
    return dec(value).quantize(MWH, rounding=ROUND_HALF_UP)


def fmt(amount: Decimal | None, currency: str | None = None) -> str:
    """The plain text of an amount with its minor units ("12.30"), for JSON, CSV and events."""
    if amount is None:
        return ""
    if currency is not None:
        amount = round_money(amount, currency)
    return format(amount, "f")


def money_schema(minimum: Decimal | None = ZERO) -> Any:
    """A voluptuous validator: any number -> Decimal, at least `minimum` when given."""

    def validate(value: Any) -> Decimal:
        try:
            result = dec(value)
        except ValueError as err:
            raise vol.Invalid(str(err)) from None
        if minimum is not None and result < minimum:
            raise vol.Invalid(f"must be at least {minimum}")
        return result

    return validate
