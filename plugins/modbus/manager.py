"""The running `modbus` plugin: profiles, one link per TCP endpoint or serial port, the devices
behind them, their entities, and the simulated devices the configuration asks for.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.entities import Entity
from plugins.modbus.charger import ModbusCharger
from plugins.modbus.device import ModbusDevice
from plugins.modbus.entities import PLATFORM, RegisterSensor
from plugins.modbus.link import Link
from plugins.modbus.profile import ChargerMap, Profile, load_profiles
from plugins.modbus.sim import SimulatedDevice
from plugins.modbus.simsite import SiteMeterModel

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

LINE_DEFAULTS = {"baudrate": 9600, "parity": "N", "stopbits": 1, "bytesize": 8}
SITE_PROFILE_DIR = "modbus_profiles"


class ModbusManager:
    def __init__(self, hub: Hub, conf: dict[str, Any]) -> None:
        self.hub = hub
        self.conf = conf
        self.profiles: dict[str, Profile] = {}
        self.links: dict[str, Link] = {}
        self.devices: dict[str, ModbusDevice] = {}
        self.chargers: dict[str, ModbusCharger] = {}
        self.simulated: list[SimulatedDevice] = []
        self._waited: dict[str, int] = {}

    # --- set-up --------------------------------------------------------------------------------
    def _profile_dirs(self) -> list[Path]:
        base = self.hub.config_dir or Path.cwd()
        dirs = [base / d for d in self.conf["profile_dirs"]]
        default = base / SITE_PROFILE_DIR
        if default.is_dir() and default not in dirs:
            dirs.append(default)
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise ValueError(f"modbus profile_dirs not found: {', '.join(missing)}")
        return dirs

    def _profile(self, name: str, where: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise ValueError(f"{where}: unknown profile {name!r}; known: {known}") from None

    async def start(self) -> None:
        self.profiles = load_profiles(self._profile_dirs())
        for sim_conf in self.conf["simulate"]:
            await self._simulate(sim_conf)
        entities: list[Entity] = []
        for dev_conf in self.conf["devices"]:
            profile = self._profile(dev_conf["profile"], f"modbus device {dev_conf['name']}")
            device = ModbusDevice(self.hub, self._link(dev_conf, profile), dev_conf, profile)
            self.devices[device.name] = device
            sensors = [RegisterSensor(device, r) for r in profile.registers.values() if r.entity]
            entities += sensors
            charger = None
            if profile.charger is not None:
                charger = ModbusCharger(device, _limits(profile.charger, dev_conf))
                self.chargers[device.name] = charger
                entities.append(charger)
            device.listen(_publisher(sensors, charger))
        await self.hub.entities.add(PLATFORM, entities)
        for device in self.devices.values():
            device.start()

    def _link(self, conf: dict[str, Any], profile: Profile) -> Link:
        if "serial_port" in conf:
            key = f"serial:{conf['serial_port']}"
            line = {k: conf.get(k, profile.line.get(k, v)) for k, v in LINE_DEFAULTS.items()}
        else:
            key = f"tcp:{conf['host']}:{conf['port']}"
            line = {"host": conf["host"], "port": conf["port"]}
        settings = {**line, "timeout": conf["timeout"]}
        if "serial_port" in conf:
            settings["serial_port"] = conf["serial_port"]
        if "framer" in conf:
            settings["framer"] = conf["framer"]
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = Link(self.hub.clock, settings)
            return link
        # One bus, one set of line settings: the devices on it must agree.
        clash = {
            k: (link.conf.get(k), v)
            for k, v in settings.items()
            if k != "timeout" and link.conf.get(k) != v
        }
        if clash:
            raise ValueError(f"modbus device {conf['name']}: {key} is already open with {clash}")
        link.conf["timeout"] = max(link.conf["timeout"], conf["timeout"])
        return link

    async def _simulate(self, conf: dict[str, Any]) -> None:
        profile = self._profile(conf["profile"], "modbus simulate")
        model = SiteMeterModel(self.hub, conf, profile)
        sim = SimulatedDevice(
            profile, model.values, unit_id=conf["unit_id"], pad_gaps=profile.max_gap
        )
        port = await sim.start_tcp(conf["host"], conf["port"])
        self.simulated.append(sim)
        _LOGGER.info(
            "simulated %s (unit %d) serving on %s:%d", profile.name, conf["unit_id"],
            conf["host"], port,
        )  # fmt: skip

    # --- running -------------------------------------------------------------------------------
    async def stop(self) -> None:
        for device in self.devices.values():
            device.stop()
        for link in self.links.values():
            link.close()
        for sim in self.simulated:
            await sim.stop()

    async def settle(self, timeout: float = 0.25) -> None:
        """Wait (real time, bounded) until no request is on any wire: for tests and tools.

        A request already waited for once is hanging (a silent device): it is not waited for
        again, so stepping a simulated clock past its timeout stays fast.
        """
        waits = []
        for name, link in self.links.items():
            if link.busy and self._waited.get(name) == link.requests:
                continue
            self._waited[name] = link.requests
            if link.busy:
                waits.append(link.idle.wait())
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=timeout)

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: device.status() for name, device in self.devices.items()}


def _limits(cmap: ChargerMap, conf: dict[str, Any]) -> ChargerMap:
    """The installer's min/max current (the circuit, the cable) narrow the profile's."""
    low = max(cmap.min_current, conf.get("min_current", cmap.min_current))
    high = min(cmap.max_current, conf.get("max_current", cmap.max_current))
    return replace(cmap, min_current=low, max_current=max(low, high))


def _publisher(sensors: list[RegisterSensor], charger: ModbusCharger | None) -> Any:
    def publish() -> None:
        for sensor in sensors:
            sensor.write_state()
        if charger is not None:
            charger.refresh()

    return publish
