"""Register codec and read planning: every type, word and byte order, sentinels, merging rules."""

from __future__ import annotations

import math

import pytest

from plugins.modbus.codec import NotAvailable, ValueSpec, decode, encode, encode_raw
from plugins.modbus.plan import plan_blocks, split
from plugins.modbus.profile import Register


@pytest.mark.parametrize("type_", ["int16", "uint16", "int32", "uint32", "int64", "uint64"])
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
def test_integers_round_trip_in_every_order(type_: str, word_order: str, byte_order: str) -> None:
    spec = ValueSpec(type_, word_order=word_order, byte_order=byte_order, scale=0.01)
    value = 123.45 if type_.startswith("u") else -123.45
    assert decode(spec, encode(spec, value)) == pytest.approx(value)


@pytest.mark.parametrize("type_", ["float32", "float64"])
def test_floats_round_trip_and_nan_means_no_value(type_: str) -> None:
    spec = ValueSpec(type_, word_order="little")
    assert decode(spec, encode(spec, 229.8)) == 229.8  # no float32 noise like 229.800003
    with pytest.raises(NotAvailable):
        decode(spec, encode(spec, math.nan))
    assert decode(spec, encode(spec, math.inf)) == math.inf  # out of range: judged later


def test_word_order_is_what_puts_the_low_word_first() -> None:
    big, little = ValueSpec("uint32"), ValueSpec("uint32", word_order="little")
    assert encode(big, 0x12345678) == [0x1234, 0x5678]
    assert encode(little, 0x12345678) == [0x5678, 0x1234]
    assert encode(ValueSpec("uint16", byte_order="little"), 0x1234) == [0x3412]


def test_sentinels_and_strings() -> None:
    abb = ValueSpec("uint32", scale=0.1, not_available=(0xFFFFFFFF,))
    with pytest.raises(NotAvailable):
        decode(abb, encode_raw(abb, 0xFFFFFFFF))
    sunspec = ValueSpec("int16", not_available=(0x8000,))
    with pytest.raises(NotAvailable):
        decode(sunspec, [0x8000])
    text = ValueSpec("string", count=5)
    assert decode(text, encode(text, "C2")) == "C2"
    with pytest.raises(NotAvailable):
        decode(text, [0, 0, 0, 0, 0])


def test_scale_offset_and_exponent() -> None:
    spec = ValueSpec("int16", scale=0.5, offset=-40)
    assert decode(spec, encode(spec, 21.5)) == 21.5
    assert decode(ValueSpec("int16"), [2856], exponent=-1) == 285.6
    with pytest.raises(ValueError, match="does not fit"):
        encode(ValueSpec("uint16", scale=0.1), 7000)


def _regs(*spans: tuple[str, int, int, str]) -> list[Register]:
    return [
        Register(key, address, fn, ValueSpec("float32" if size == 2 else "uint16"), key)
        for key, address, size, fn in spans
    ]


def test_contiguous_registers_are_one_request_within_the_limits() -> None:
    regs = _regs(*[(f"r{i}", 2 * i, 2, "input") for i in range(100)])  # 200 registers
    blocks = plan_blocks(regs, max_registers=125, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 124), (124, 76)]
    assert all(b.count <= 125 for b in blocks)


def test_gaps_functions_and_the_gap_threshold() -> None:
    regs = _regs(("a", 0, 1, "holding"), ("b", 5, 1, "holding"), ("c", 30, 1, "holding"),
                 ("d", 0, 1, "input"))  # fmt: skip
    blocks = plan_blocks(regs, max_gap=8)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        ("holding", 0, 6), ("holding", 30, 1), ("input", 0, 1)
    ]  # fmt: skip
    assert len(plan_blocks(regs, max_gap=0)) == 4


def test_a_refused_block_splits_into_runs_then_single_values() -> None:
    regs = _regs(("a", 0, 2, "input"), ("b", 2, 2, "input"), ("c", 10, 2, "input"))
    by_key = {r.key: r for r in regs}
    (block,) = plan_blocks(regs, max_gap=8)
    runs = split(block, by_key)
    assert [(b.address, b.count) for b in runs] == [(0, 4), (10, 2)]
    assert [(b.address, b.count) for b in split(runs[0], by_key)] == [(0, 2), (2, 2)]
    assert split(runs[1], by_key) == [runs[1]]


def test_the_examples_in_module_docstrings_hold() -> None:
    import doctest

    import plugins.modbus.codec
    import plugins.modbus.plan
    import plugins.openevse.rapi

    for module in (plugins.modbus.codec, plugins.modbus.plan, plugins.openevse.rapi):
        assert doctest.testmod(module).failed == 0, module.__name__
