"""A server process for the OCPP benchmark: the hub (OCPP plugin, SQLite recorder) or a bare
aiohttp websocket JSON echo, pinned to one core; stdin commands report CPU time and memory.

    python -m tests.bench.ocpp_server hub|echo CONFIG_DIR CHARGERS
prints `port N`, then answers `mark` with `cpu SECONDS rss BYTES` and stops on `quit`.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
from pathlib import Path

import yaml
from aiohttp import web


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def threads() -> str:
    """CPU seconds per thread name, from /proc: where the server's time goes."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name.split("_")[0].split("-")[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return ",".join(f"{k}={v:.2f}" for k, v in sorted(out.items()))


LAG = {"max": 0.0}


async def watch_lag() -> None:
    """The longest the loop was late waking a 20 ms sleep: how long the server stalled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(0.02)
        LAG["max"] = max(LAG["max"], loop.time() - asked - 0.02)


def usage() -> str:
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as fh:
        rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    lag, LAG["max"] = LAG["max"], 0.0
    return f"cpu {r.ru_utime + r.ru_stime:.6f} rss {rss} {threads()},stall_ms={lag * 1000:.1f}"


async def echo_server() -> tuple[int, object]:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("ocpp1.6",), compress=False)
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            await ws.send_str(json.dumps([3, frame[1], {}]))
        return ws

    app = web.Application()
    app.router.add_get("/ocpp/{id}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=8192)
    await site.start()
    return site._server.sockets[0].getsockname()[1], runner  # type: ignore[union-attr]


async def hub_server(config_dir: Path, chargers: int) -> tuple[int, object]:
    from hub.bootstrap import create_hub

    config = {
        "logger": {"default": "warning"},
        "ocpp": {
            "host": "127.0.0.1",
            "port": 0,
            "ping_interval": 0,
            "backlog": 8192,
            "chargers": [
                {"id": f"cp{n:05d}", "password": f"bench-password-{n:05d}"} for n in range(chargers)
            ],
        },
        "allowlist": {"tokens": [{"id": "BENCH001"}]},
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(yaml.safe_dump(config))
    hub = create_hub(config_dir)
    await hub.start()
    return hub.data["ocpp"].ports[0], hub


async def main() -> None:
    kind, config_dir, chargers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    raise_file_limit()
    if kind == "hub":
        port, owner = await hub_server(config_dir, chargers)
    else:
        port, owner = await echo_server()
    import gc

    gc.collect()
    gc.freeze()
    lag_task = asyncio.create_task(watch_lag())
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "mark":
            print(usage(), flush=True)
        elif line == "quit":
            break
    lag_task.cancel()
    if kind == "hub":
        await owner.stop()  # type: ignore[attr-defined]
    else:
        await owner.cleanup()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
