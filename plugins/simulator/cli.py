"""`evhub simulate`: N simulated OCPP chargers on the wall clock against any CSMS.

Runs until --duration or Ctrl-C, then prints one summary line (connected, transactions, errors).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from hub.clock import RealClock
from plugins.simulator.charger import ChargerSpec
from plugins.simulator.site import DEFAULT_URL, SimulatedSite, ssl_for
from plugins.simulator.vehicles import ArrivalConfig

HELP = "run simulated OCPP chargers and vehicles against a CSMS"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"CSMS base URL (default {DEFAULT_URL})")
    parser.add_argument("--chargers", type=int, default=1, metavar="N", help="how many chargers")
    parser.add_argument(
        "--ocpp",
        choices=["1.6", "2.0.1", "mixed"],
        default="1.6",
        help="version (mixed: alternate)",
    )
    parser.add_argument("--connectors", type=int, default=2, help="connectors per charger")
    parser.add_argument("--max-current", type=float, default=32.0, help="A per phase")
    parser.add_argument("--phases", type=int, choices=[1, 3], default=3)
    parser.add_argument("--password", help="HTTP Basic auth password (security profile 1)")
    parser.add_argument("--meter-interval", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after (default: ^C)"
    )
    parser.add_argument("--id-prefix", default="sim", help="charger ids are PREFIX-001, ...")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same vehicles")
    parser.add_argument(
        "--ramp", type=float, default=0.0, metavar="SECONDS", help="spread connects"
    )
    parser.add_argument(
        "--first-arrival-within", type=float, default=120.0, metavar="SECONDS",
        help="the first vehicle arrives at each connector within this time",
    )  # fmt: skip
    parser.add_argument("--no-vehicles", action="store_true", help="chargers only, no arrivals")
    parser.add_argument("--insecure", action="store_true", help="wss: skip certificate checks")
    parser.add_argument("--ca-file", help="wss: CA bundle to verify the CSMS with")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def specs_from_args(args: argparse.Namespace) -> list[ChargerSpec]:
    width = max(3, len(str(args.chargers)))
    versions = ["1.6", "2.0.1"] if args.ocpp == "mixed" else [args.ocpp]
    return [
        ChargerSpec(
            id=f"{args.id_prefix}-{n:0{width}d}",
            ocpp=versions[(n - 1) % len(versions)],
            connectors=args.connectors,
            max_current=args.max_current,
            phases=args.phases,
            password=args.password,
        )
        for n in range(1, args.chargers + 1)
    ]


async def run(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one charger was accepted by the CSMS, else 1."""
    clock = RealClock()
    site = SimulatedSite(
        specs_from_args(args),
        clock=clock,
        url=args.url,
        seed=args.seed,
        meter_interval=args.meter_interval,
        arrivals=ArrivalConfig(
            enabled=not args.no_vehicles, first_within=args.first_arrival_within
        ),
        ramp=args.ramp,
        ssl_context=ssl_for(args.url, not args.insecure, args.ca_file),
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    timer = clock.call_later(args.duration, done.set) if args.duration else None
    try:
        await site.start()
        await done.wait()
    finally:
        if timer is not None:
            timer.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await site.stop()
    print(site.summary(), flush=True)
    return 0 if site.totals()["ever_accepted"] else 1
