"""Register words <-> engineering values: types, word and byte order, scale, offset, sentinels.

Pure functions, used by the poller to decode, by chargers to encode a limit and by the simulator.

    >>> spec = ValueSpec("float32")
    >>> encode(spec, 230.5)
    [17254, 32768]
    >>> decode(spec, [17254, 32768])
    230.5
    >>> decode(ValueSpec("int32", word_order="little", scale=0.1), encode(
    ...     ValueSpec("int32", word_order="little", scale=0.1), -12.3))
    -12.3
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

# type -> (struct code, registers); "string" takes its length from `count`.
TYPES: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
    "string": ("s", 0),
}
ORDERS = ("big", "little")


class NotAvailable(ValueError):
    """The device says it has no value here (a sentinel, NaN, an unset string)."""


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How one value sits in registers; `registers` is how many it spans."""

    type: str = "uint16"
    word_order: str = "big"  # "little": the least significant register comes first
    byte_order: str = "big"  # "little": the two bytes inside each register are swapped
    scale: float = 1.0
    offset: float = 0.0
    count: int = 0  # registers, for strings
    not_available: tuple[int, ...] = ()  # raw integer values meaning "no value"

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown type {self.type!r}; use one of {', '.join(TYPES)}")
        if self.word_order not in ORDERS or self.byte_order not in ORDERS:
            raise ValueError("word_order and byte_order are 'big' or 'little'")
        if self.type == "string" and self.count < 1:
            raise ValueError("a string needs `count` (registers, two characters each)")
        if self.scale == 0:
            raise ValueError("scale 0 would turn every value into 0")

    @property
    def registers(self) -> int:
        return self.count if self.type == "string" else TYPES[self.type][1]

    @property
    def is_float(self) -> bool:
        return self.type in ("float32", "float64")


def _to_bytes(spec: ValueSpec, words: Sequence[int]) -> bytes:
    ordered = list(reversed(words)) if spec.word_order == "little" else list(words)
    return b"".join((w & 0xFFFF).to_bytes(2, spec.byte_order) for w in ordered)


def _to_words(spec: ValueSpec, data: bytes) -> list[int]:
    words = [int.from_bytes(data[i : i + 2], spec.byte_order) for i in range(0, len(data), 2)]
    return list(reversed(words)) if spec.word_order == "little" else words


def raw_value(spec: ValueSpec, words: Sequence[int]) -> int | float | str:
    """The unscaled value the registers hold."""
    if len(words) != spec.registers:
        raise ValueError(f"{spec.type} needs {spec.registers} registers, got {len(words)}")
    data = _to_bytes(spec, words)
    if spec.type == "string":
        return data.split(b"\0", 1)[0].decode("latin-1").strip()
    return struct.unpack(">" + TYPES[spec.type][0], data)[0]


def decode(spec: ValueSpec, words: Sequence[int], exponent: int = 0) -> float | str:
    """Engineering value of `words`; `exponent` is a SunSpec-style power-of-ten scale factor.

    Raises NotAvailable for the device's "no value" markers and NaN.
    """
    raw = raw_value(spec, words)
    if isinstance(raw, str):
        if not raw:
            raise NotAvailable("empty string")
        return raw
    if spec.is_float:
        if math.isnan(raw):
            raise NotAvailable("NaN")
        if spec.type == "float32" and math.isfinite(raw):
            # A float32 holds about 7 significant digits: 229.8 must not read as 229.800003.
            raw = float(f"{raw:.7g}")
        if spec.not_available and _bits(spec, words) in spec.not_available:
            raise NotAvailable(f"not-available marker 0x{_bits(spec, words):X}")
    elif raw in spec.not_available or _bits(spec, words) in spec.not_available:
        raise NotAvailable(f"not-available marker 0x{_bits(spec, words):X}")
    value = raw * spec.scale * (10.0**exponent) + spec.offset
    # Scaling integers by 0.1 leaves 230.10000000000002; round to what the scale can resolve.
    digits = _digits(spec.scale * (10.0**exponent))
    return round(value, digits) if digits is not None else float(value)


def _bits(spec: ValueSpec, words: Sequence[int]) -> int:
    """The registers as one unsigned integer in value order (what sentinels are written as)."""
    return int.from_bytes(_to_bytes(spec, words), "big")


def _digits(step: float) -> int | None:
    if step >= 1:
        return 6
    digits = -math.floor(math.log10(step)) + 3
    return min(digits, 12)


def encode(spec: ValueSpec, value: float | str, exponent: int = 0) -> list[int]:
    """Registers that hold `value` (the inverse of decode); raises ValueError if it cannot fit."""
    if spec.type == "string":
        data = str(value).encode("latin-1")[: 2 * spec.count].ljust(2 * spec.count, b"\0")
        return _to_words(spec, data)
    if isinstance(value, str):
        raise ValueError(f"{spec.type} cannot hold {value!r}")
    raw = (value - spec.offset) / (spec.scale * (10.0**exponent))
    code = TYPES[spec.type][0]
    if not spec.is_float:
        raw = round(raw)
        bits = 8 * struct.calcsize(code)
        low, high = (
            (0, 2**bits - 1) if code.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        if not low <= raw <= high:
            raise ValueError(f"{value} does not fit {spec.type} at scale {spec.scale}")
    return _to_words(spec, struct.pack(">" + code, raw))


def encode_raw(spec: ValueSpec, raw: int) -> list[int]:
    """Registers holding an unscaled integer bit pattern (a sentinel such as 0xFFFFFFFF)."""
    data = raw.to_bytes(2 * spec.registers, "big")
    return _to_words(spec, data)
