"""SunSpec discovery: find the "SunS" marker, walk the model blocks, place the profile's model.

The model layouts are data (`profiles/sunspec_meter.yaml`); this module only finds where they sit.
"""

from __future__ import annotations

import logging
from typing import Any

from plugins.modbus.codec import NotAvailable, decode
from plugins.modbus.link import DeviceError, Link
from plugins.modbus.profile import Profile

_LOGGER = logging.getLogger(__name__)

MARKER = [0x5375, 0x6E53]  # "SunS"
END = 0xFFFF
MAX_MODELS = 64  # a device lists a handful; stop walking a corrupt chain


async def discover(link: Link, unit: int, template: Profile) -> tuple[Profile, dict[str, Any]]:
    """The profile at the address of the first wanted model, and what model 1 says.

    Raises DeviceError when there is no SunSpec header or no wanted model.
    """
    ss = template.sunspec
    assert ss is not None
    base = None
    for candidate in ss.bases:
        try:
            words = await link.read("holding", candidate, 2, unit)
        except DeviceError as err:
            if err.exception_code is None:
                raise  # no answer at all: the device is down, not just without a header here
            continue
        if words == MARKER:
            base = candidate
            break
    if base is None:
        where = ", ".join(str(b) for b in ss.bases)
        raise DeviceError(f"no SunSpec header 'SunS' at {where}")
    address, seen, info = base + 2, [], {"sunspec_base": base}
    for _ in range(MAX_MODELS):
        model_id, length = await link.read("holding", address, 2, unit)
        if model_id in (END, 0) or address + 2 + length > 0xFFFF:
            break
        seen.append(model_id)
        if model_id == 1 and ss.common:
            info.update(await _common(link, unit, template, address, length))
        if model_id in ss.models:
            profile = _place(template, address, length)
            info.update(sunspec_model=model_id, sunspec_address=address)
            _LOGGER.info(
                "%s: SunSpec model %d at %d (base %d, models %s)",
                link.name, model_id, address, base, seen,
            )  # fmt: skip
            return profile, info
        address += 2 + length
    wanted = ", ".join(str(m) for m in ss.models)
    raise DeviceError(f"SunSpec device without model {wanted} (found {seen or 'none'})")


def _place(template: Profile, address: int, length: int) -> Profile:
    """Absolute addresses; points beyond the block's declared length are left out."""
    placed = template.at(address)
    limit = address + 2 + length
    regs = {k: r for k, r in placed.registers.items() if r.end <= limit}
    return Profile(
        name=template.name,
        kind=template.kind,
        registers=regs,
        manufacturer=template.manufacturer,
        model=template.model,
        source=template.source,
        max_registers=template.max_registers,
        max_gap=template.max_gap,
        line=template.line,
        charger=template.charger,
        sunspec=None,
        path=template.path,
    )


async def _common(
    link: Link, unit: int, template: Profile, address: int, length: int
) -> dict[str, Any]:
    """Manufacturer, model and serial number from the common model (model 1)."""
    assert template.sunspec is not None
    regs = [r for r in template.sunspec.common.values() if r.end <= length + 2]
    if not regs:
        return {}
    end = max(r.end for r in regs)
    try:
        words = await link.read("holding", address, end, unit)
    except DeviceError as err:
        _LOGGER.debug("%s: SunSpec common model unreadable: %s", link.name, err.reason)
        return {}
    out: dict[str, Any] = {}
    for reg in regs:
        try:
            out[reg.key] = decode(reg.spec, words[reg.address : reg.end])
        except (NotAvailable, ValueError):
            continue
    return out
