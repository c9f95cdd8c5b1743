"""Read planning: which requests fetch a device's registers, fewest first, and how to split them.

Neighbouring registers of one function are merged into a request up to the device's limit and
across small gaps; a device that rejects a merged read gets it split (see `split`).

    >>> from plugins.modbus.codec import ValueSpec
    >>> from plugins.modbus.profile import Register
    >>> regs = [Register(k, a, "input", ValueSpec("float32"), k) for k, a in
    ...         [("v1", 0), ("v2", 2), ("p", 52), ("e", 72)]]
    >>> [(b.address, b.count, b.keys) for b in plan_blocks(regs, max_registers=80, max_gap=8)]
    [(0, 4, ('v1', 'v2')), (52, 2, ('p',)), (72, 2, ('e',))]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plugins.modbus.profile import Register


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers of `function` from `address`, holding `keys`."""

    function: str
    address: int
    count: int
    keys: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_blocks(
    registers: Iterable[Register], *, max_registers: int = 125, max_gap: int = 8
) -> list[Block]:
    """Merge registers into as few requests as the limits allow, in address order."""
    blocks: list[Block] = []
    for function in ("holding", "input"):
        regs = sorted((r for r in registers if r.function == function), key=lambda r: r.address)
        current: list[Register] = []
        for reg in regs:
            if current:
                start, end = current[0].address, max(r.end for r in current)
                gap = reg.address - end
                if gap > max_gap or max(end, reg.end) - start > max_registers:
                    blocks.append(_block(function, current))
                    current = []
            current.append(reg)
        if current:
            blocks.append(_block(function, current))
    return blocks


def _block(function: str, regs: Sequence[Register]) -> Block:
    start = regs[0].address
    end = max(r.end for r in regs)
    return Block(function, start, end - start, tuple(r.key for r in regs))


def split(block: Block, registers: dict[str, Register]) -> list[Block]:
    """Smaller requests for a block the device refused (illegal data address).

    Devices often refuse a read that touches a register they do not have: first read only the
    gap-free runs, then, if a run is refused too, each value alone. A single value cannot split.
    """
    regs = sorted((registers[k] for k in block.keys), key=lambda r: r.address)
    runs: list[list[Register]] = []
    for reg in regs:
        if runs and reg.address <= max(r.end for r in runs[-1]):
            runs[-1].append(reg)
        else:
            runs.append([reg])
    if len(runs) > 1:
        return [_block(block.function, run) for run in runs]
    if len(regs) > 1:
        return [_block(block.function, [reg]) for reg in regs]
    return [block]
