"""Device profiles: register maps as YAML data, validated into `Profile`s the poller can read.

Built-in profiles live in `plugins/modbus/profiles/`; a site adds its own with `profile_dirs`.
docs/devices.md describes the format with a worked example.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from hub.charging.charger import ConnectorStatus
from plugins.modbus.codec import ORDERS, TYPES, ValueSpec

_LOGGER = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "profiles"
FUNCTIONS = ("holding", "input")
MAX_REQUEST = 125  # registers per read request: the Modbus limit

# What the standard keys mean; a profile may leave device_class/state_class/unit out for these.
_PHASED = {"power": "W", "current": "A", "voltage": "V", "power_factor": None}
STANDARD: dict[str, tuple[str | None, str | None, str | None]] = {
    "energy_import": ("energy", "total_increasing", "kWh"),
    "energy_export": ("energy", "total_increasing", "kWh"),
    "frequency": ("frequency", "measurement", "Hz"),
    "temperature": ("temperature", "measurement", "°C"),
    **{
        f"{base}{suffix}": (base, "measurement", unit)
        for base, unit in _PHASED.items()
        for suffix in ("", "_l1", "_l2", "_l3")
    },
}

# Plausible ranges by device class, in the class's base unit (W, A, V, Wh, Hz, 1).
_BOUNDS: dict[str, tuple[float, float]] = {
    "power": (-1e7, 1e7),
    "apparent_power": (-1e7, 1e7),
    "reactive_power": (-1e7, 1e7),
    "current": (-1e4, 1e4),
    "voltage": (0.0, 1000.0),
    "frequency": (0.0, 100.0),
    "power_factor": (-1.1, 1.1),
    "energy": (0.0, 1e13),
    "temperature": (-60.0, 200.0),
}
UNIT_FACTOR = {
    "W": 1.0, "kW": 1e3, "MW": 1e6, "VA": 1.0, "kVA": 1e3, "var": 1.0, "kvar": 1e3, "VAr": 1.0,
    "kVAr": 1e3, "Wh": 1.0, "kWh": 1e3, "MWh": 1e6, "A": 1.0, "mA": 1e-3, "V": 1.0, "kV": 1e3,
    "Hz": 1.0, "%": 0.01,
}  # fmt: skip
ENERGY_RATE_W = 1e7  # an energy register never moves faster than 10 MW


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class Register:
    key: str
    address: int
    function: str
    spec: ValueSpec
    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    entity: bool = True
    enabled: bool = True
    minimum: float | None = None
    maximum: float | None = None
    max_rate: float | None = None  # units per second between two readings
    scale_factor: str | None = None  # key of the register holding a power-of-ten exponent

    @property
    def end(self) -> int:
        return self.address + self.spec.registers


@dataclass(frozen=True, slots=True)
class ChargerMap:
    """Which registers make a charger: its status, the current it may draw and how to set it."""

    status: str
    status_map: Mapping[Any, ConnectorStatus]
    limit: str
    min_current: float
    max_current: float
    pause: float = 0.0
    phases: int = 3
    refresh: float | None = None  # rewrite the limit this often (a watchdog / validity time)
    write_function: int | None = None  # 6 or 16; None: 6 for one register, 16 for more
    min_register: str | None = None
    max_register: str | None = None
    phases_register: str | None = None


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    bases: tuple[int, ...]
    models: tuple[int, ...]
    common: Mapping[str, Register]  # model 1, offsets from its ID register


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str  # meter | charger
    registers: Mapping[str, Register]
    manufacturer: str | None = None
    model: str | None = None
    source: str | None = None
    max_registers: int = MAX_REQUEST
    max_gap: int = 8
    line: Mapping[str, Any] = field(default_factory=dict)  # usual serial settings
    charger: ChargerMap | None = None
    sunspec: SunSpecMap | None = None
    path: Path | None = None

    def at(self, base: int) -> Profile:
        """The profile with every address shifted by `base` (SunSpec: the model's start)."""
        regs = {k: replace(r, address=r.address + base) for k, r in self.registers.items()}
        return replace(self, registers=regs)


# --- the file format -----------------------------------------------------------------------------
def _address(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise vol.Invalid(f"expected a register address 0..65535, got {value!r}")
    return value


def _status(value: Any) -> ConnectorStatus:
    try:
        return ConnectorStatus(value)
    except ValueError:
        raise vol.Invalid(
            f"unknown status {value!r}; use one of {', '.join(s.value for s in ConnectorStatus)}"
        ) from None


_SPEC_KEYS = {
    vol.Optional("function"): vol.In(FUNCTIONS),
    vol.Optional("type"): vol.In(list(TYPES)),
    vol.Optional("word_order"): vol.In(ORDERS),
    vol.Optional("byte_order"): vol.In(ORDERS),
}
REGISTER_SCHEMA = vol.Schema(
    {
        # In a `sunspec:` profile an address counts from the model's ID register.
        vol.Required("address"): _address,
        **_SPEC_KEYS,
        vol.Optional("count"): vol.All(int, vol.Range(min=1, max=MAX_REQUEST)),
        vol.Optional("scale", default=1.0): vol.All(vol.Coerce(float), vol.NotIn([0.0])),
        vol.Optional("offset", default=0.0): vol.Coerce(float),
        vol.Optional("scale_factor"): str,
        vol.Optional("unit"): vol.Any(None, str),
        vol.Optional("device_class"): vol.Any(None, str),
        vol.Optional("state_class"): vol.Any(None, vol.In(["measurement", "total_increasing"])),
        vol.Optional("name"): str,
        vol.Optional("not_available"): vol.All(vol.Coerce(list), [int]),
        vol.Optional("min"): vol.Coerce(float),
        vol.Optional("max"): vol.Coerce(float),
        vol.Optional("max_rate"): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("entity", default=True): bool,
        vol.Optional("enabled", default=True): bool,
    }
)
CHARGER_SCHEMA = vol.Schema(
    {
        vol.Required("status"): {vol.Required("register"): str, vol.Required("map"): {
            vol.Any(int, str): _status}},
        vol.Required("limit"): {
            vol.Required("register"): str,
            vol.Required("min"): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Required("max"): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Optional("pause", default=0.0): vol.Coerce(float),
            vol.Optional("refresh"): vol.All(vol.Coerce(float), vol.Range(min=1)),
            vol.Optional("write_function"): vol.In([6, 16]),
            vol.Optional("min_register"): str,
            vol.Optional("max_register"): str,
        },
        vol.Optional("phases", default=3): vol.In([1, 3]),
        vol.Optional("phases_register"): str,
    }
)  # fmt: skip
PROFILE_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): vol.Match(r"^[a-z0-9_]+$"),
        vol.Required("kind"): vol.In(["meter", "charger"]),
        vol.Optional("manufacturer"): str,
        vol.Optional("model"): str,
        vol.Required("source"): str,  # where the register map came from: no invented registers
        vol.Optional("defaults", default={}): _SPEC_KEYS,
        vol.Optional("max_registers", default=MAX_REQUEST): vol.All(
            int, vol.Range(min=1, max=MAX_REQUEST)
        ),
        vol.Optional("max_gap", default=8): vol.All(int, vol.Range(min=0, max=MAX_REQUEST)),
        vol.Optional("line", default={}): {
            vol.Optional("baudrate"): int,
            vol.Optional("parity"): vol.In(["N", "E", "O"]),
            vol.Optional("stopbits"): vol.In([1, 2]),
            vol.Optional("bytesize"): vol.In([7, 8]),
        },
        vol.Required("registers"): {vol.Match(r"^[a-z0-9_]+$"): REGISTER_SCHEMA},
        vol.Optional("charger"): CHARGER_SCHEMA,
        vol.Optional("sunspec"): {
            vol.Optional("bases", default=[40000, 0, 50000]): [_address],
            vol.Required("models"): [vol.All(int, vol.Range(min=1, max=0xFFFE))],
            vol.Optional("common", default={}): {vol.Match(r"^[a-z0-9_]+$"): REGISTER_SCHEMA},
        },
    }
)


def _registers(raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Register]:
    out: dict[str, Register] = {}
    for key, conf in raw.items():
        dc, sc, unit = STANDARD.get(key, (None, None, None))
        try:
            spec = ValueSpec(
                type=conf.get("type", defaults.get("type", "uint16")),
                word_order=conf.get("word_order", defaults.get("word_order", "big")),
                byte_order=conf.get("byte_order", defaults.get("byte_order", "big")),
                scale=conf["scale"],
                offset=conf["offset"],
                count=conf.get("count", 0),
                not_available=tuple(conf.get("not_available", ())),
            )
        except ValueError as err:
            raise vol.Invalid(str(err), [key]) from None
        out[key] = Register(
            key=key,
            address=conf["address"],
            function=conf.get("function", defaults.get("function", "holding")),
            spec=spec,
            name=conf.get("name", key.replace("_", " ")),
            unit=conf.get("unit", unit),
            device_class=conf.get("device_class", dc),
            state_class=conf.get("state_class", sc),
            entity=conf["entity"],
            enabled=conf["enabled"],
            minimum=conf.get("min"),
            maximum=conf.get("max"),
            max_rate=conf.get("max_rate"),
            scale_factor=conf.get("scale_factor"),
        )
    return out


def _check_refs(profile: Profile) -> None:
    regs = profile.registers
    for reg in regs.values():
        if reg.scale_factor and reg.scale_factor not in regs:
            raise vol.Invalid(f"scale_factor {reg.scale_factor!r} is not a register", [reg.key])
        if reg.spec.registers > profile.max_registers:
            raise vol.Invalid(f"spans more than max_registers {profile.max_registers}", [reg.key])
    ch = profile.charger
    if profile.kind == "charger" and ch is None:
        raise vol.Invalid("a charger profile needs a `charger:` block", ["charger"])
    if ch is not None:
        for name in (ch.status, ch.limit, ch.min_register, ch.max_register, ch.phases_register):
            if name is not None and name not in regs:
                raise vol.Invalid(f"{name!r} is not one of the registers", ["charger"])
        if regs[ch.limit].function != "holding":
            raise vol.Invalid("the limit register must be a holding register", ["charger"])
        if ch.min_current > ch.max_current:
            raise vol.Invalid("limit min is above max", ["charger", "limit"])


def parse_profile(data: Any, name: str, path: Path | None = None) -> Profile:
    """Validate one profile document; raises ProfileError naming the file and key."""
    where = str(path or name)
    try:
        conf = PROFILE_SCHEMA(data)
        regs = _registers(conf["registers"], conf["defaults"])
        charger = None
        if "charger" in conf:
            ch, limit = conf["charger"], conf["charger"]["limit"]
            charger = ChargerMap(
                status=ch["status"]["register"],
                status_map=dict(ch["status"]["map"]),
                limit=limit["register"],
                min_current=limit["min"],
                max_current=limit["max"],
                pause=limit["pause"],
                phases=ch["phases"],
                refresh=limit.get("refresh"),
                write_function=limit.get("write_function"),
                min_register=limit.get("min_register"),
                max_register=limit.get("max_register"),
                phases_register=ch.get("phases_register"),
            )
        sunspec = None
        if "sunspec" in conf:
            ss = conf["sunspec"]
            common = _registers(ss["common"], {"function": "holding"})
            sunspec = SunSpecMap(tuple(ss["bases"]), tuple(ss["models"]), common)
        profile = Profile(
            name=conf.get("name", name),
            kind=conf["kind"],
            registers=regs,
            manufacturer=conf.get("manufacturer"),
            model=conf.get("model"),
            source=conf["source"],
            max_registers=conf["max_registers"],
            max_gap=conf["max_gap"],
            line=dict(conf["line"]),
            charger=charger,
            sunspec=sunspec,
            path=path,
        )
        _check_refs(profile)
    except vol.Invalid as err:
        key = ".".join(str(p) for p in err.path)
        raise ProfileError(f"{where}: {key}: {err.msg}" if key else f"{where}: {err.msg}") from None
    return profile


def load_file(path: Path) -> Profile:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"{path}: cannot read: {err}") from None
    return parse_profile(data, path.stem, path)


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, Profile]:
    """Built-in profiles, then each extra dir's (a site's file replaces a built-in of that name)."""
    profiles: dict[str, Profile] = {}
    for directory in (BUILTIN_DIR, *extra_dirs):
        for path in sorted(Path(directory).glob("*.yaml")):
            profile = load_file(path)
            if profile.name in profiles and directory != BUILTIN_DIR:
                _LOGGER.info("profile %s from %s replaces the built-in one", profile.name, path)
            profiles[profile.name] = profile
    return profiles


def bounds(reg: Register) -> tuple[float | None, float | None]:
    """The plausible range: the profile's min/max, else one from the device class and unit."""
    low, high = reg.minimum, reg.maximum
    default = _BOUNDS.get(reg.device_class or "")
    if default is not None:
        factor = UNIT_FACTOR.get(reg.unit or "", 1.0)
        if reg.device_class == "power_factor" and reg.unit == "%":
            factor = 0.01
        low = default[0] / factor if low is None else low
        high = default[1] / factor if high is None else high
    return low, high


def max_rate(reg: Register) -> float | None:
    """Units per second a register may move; energy registers get one from ENERGY_RATE_W."""
    if reg.max_rate is not None:
        return reg.max_rate
    if reg.device_class == "energy":
        return ENERGY_RATE_W / 3600 / UNIT_FACTOR.get(reg.unit or "Wh", 1.0)
    return None
