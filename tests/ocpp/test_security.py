"""Who may connect: subprotocols, security profiles 1-3, pending registration, throttling,
security events, and a second connection with the same id."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.clock import SimClock
from tests.ocpp.support import PASSWORD, basic_auth, ocpp_url, running_hub

CHARGERS = {
    "chargers": [
        {"id": "bay_01", "password": PASSWORD},
        {"id": "legacy_16", "password": PASSWORD, "ocpp": ["1.6"]},
        {"id": "open_0", "security_profile": 0},
        {"id": "tls_2", "security_profile": 2, "password": PASSWORD},
    ]
}


async def connect(
    url: str, protocols: list[str], headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, aiohttp.ClientWebSocketResponse | None, aiohttp.ClientSession]:
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, protocols=protocols, headers=headers or {}, **kw)
    except aiohttp.WSServerHandshakeError as err:
        await session.close()
        return err.status, None, session
    return 101, ws, session


async def heartbeat(ws: aiohttp.ClientWebSocketResponse, n: int = 0) -> list[Any]:
    await ws.send_str(json.dumps([2, f"hb{n}", "Heartbeat", {}]))
    return json.loads((await ws.receive(timeout=10)).data)


async def test_subprotocol_must_be_ours_and_allowed_for_the_charger(tmp_path: Path) -> None:
    async with running_hub(tmp_path, CHARGERS) as hub:
        auth = basic_auth("bay_01", PASSWORD)
        status, _, s = await connect(ocpp_url(hub, "bay_01"), [], auth)
        await s.close()
        assert status == 400
        status, _, s = await connect(ocpp_url(hub, "bay_01"), ["ocpp1.2", "chat"], auth)
        await s.close()
        assert status == 400
        status, ws, s = await connect(ocpp_url(hub, "bay_01"), ["ocpp9", "ocpp1.6"], auth)
        assert status == 101 and ws is not None and ws.protocol == "ocpp1.6"
        await s.close()
        # a bare /{id} path works as well as /ocpp/{id}
        port = hub.data["ocpp"].ports[0]
        status, ws, s = await connect(f"ws://127.0.0.1:{port}/bay_01", ["ocpp1.6"], auth)
        assert status == 101
        await s.close()


async def test_profile_1_credentials(tmp_path: Path) -> None:
    async with running_hub(tmp_path, CHARGERS) as hub:
        url = ocpp_url(hub, "bay_01")
        cases = [
            (None, 401),
            (basic_auth("bay_01", "wrong-password-of-length"), 401),
            (basic_auth("bay_02", PASSWORD), 401),  # user must equal the charger id
            ({"Authorization": "Basic !!!notbase64"}, 401),
            (basic_auth("bay_01", PASSWORD), 101),
        ]
        for headers, expected in cases:
            status, _, s = await connect(url, ["ocpp1.6"], headers)
            await s.close()
            assert status == expected, headers
        status, _, s = await connect(ocpp_url(hub, "nobody"), ["ocpp1.6"], None)
        await s.close()
        assert status == 404
        status, _, s = await connect(ocpp_url(hub, "open_0"), ["ocpp1.6"], None)
        assert status == 101
        await s.close()


async def test_failed_attempts_are_throttled_and_recorded(tmp_path: Path) -> None:
    clock = SimClock()
    async with running_hub(tmp_path, CHARGERS, clock) as hub:
        events: list[dict[str, Any]] = []
        hub.bus.listen("ocpp_security_event", lambda e: events.append(dict(e.data)))
        url = ocpp_url(hub, "bay_01")
        for _ in range(5):
            status, _, s = await connect(url, ["ocpp1.6"], basic_auth("bay_01", "x" * 20))
            await s.close()
            assert status == 401
        status, _, s = await connect(url, ["ocpp1.6"], basic_auth("bay_01", PASSWORD))
        await s.close()
        assert status == 429  # even the right password waits out the window
        assert [e["type"] for e in events].count("FailedToAuthenticateAtCsms") == 5
        assert events[-1]["type"] == "AuthenticationThrottled"
        await clock.advance(301)
        status, _, s = await connect(url, ["ocpp1.6"], basic_auth("bay_01", PASSWORD))
        await s.close()
        assert status == 101
        await hub.recorder.flush()
        recorded = await hub.recorder.events("ocpp_security_event", clock.now().replace(year=2020))
        assert len(recorded) == len(events)
        assert PASSWORD not in json.dumps(recorded, default=str)


async def test_profile_2_refuses_plain_websockets(tmp_path: Path) -> None:
    async with running_hub(tmp_path, CHARGERS) as hub:
        status, _, s = await connect(
            ocpp_url(hub, "tls_2"), ["ocpp1.6"], basic_auth("tls_2", PASSWORD)
        )
        await s.close()
        assert status == 403


async def test_a_second_connection_is_authenticated_before_it_replaces_the_first(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path, CHARGERS) as hub:
        url = ocpp_url(hub, "bay_01")
        _, first, s1 = await connect(url, ["ocpp1.6"], basic_auth("bay_01", PASSWORD))
        assert first is not None
        assert (await heartbeat(first, 1))[0] == 3
        # an impostor without the password changes nothing
        status, _, s2 = await connect(url, ["ocpp1.6"], basic_auth("bay_01", "y" * 20))
        await s2.close()
        assert status == 401
        assert (await heartbeat(first, 2))[0] == 3
        # the real charger reconnecting replaces the old socket
        _, second, s3 = await connect(url, ["ocpp1.6"], basic_auth("bay_01", PASSWORD))
        assert second is not None
        closed = await first.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await s1.close()
        assert (await heartbeat(second, 3))[0] == 3
        server = hub.data["ocpp"]
        assert server.connections["bay_01"].ws is not None
        assert server.stations["bay_01"].connected  # the old socket's cleanup left it alone
        await s3.close()


async def test_pending_registration_then_approval(tmp_path: Path) -> None:
    conf = {**CHARGERS, "allow_pending": True}
    async with running_hub(tmp_path, conf) as hub:
        pending: list[str] = []
        hub.bus.listen("ocpp_charger_pending", lambda e: pending.append(e.data["charger_id"]))
        url = ocpp_url(hub, "new_unit")
        _, ws, s = await connect(url, ["ocpp1.6"])
        assert ws is not None
        boot = {"chargePointVendor": "ACME", "chargePointModel": "X"}
        await ws.send_str(json.dumps([2, "b1", "BootNotification", boot]))
        answer = json.loads((await ws.receive(timeout=10)).data)
        assert answer[2]["status"] == "Pending"
        assert pending == ["new_unit"]
        await hub.services.call(
            "ocpp", "approve_charger",
            {"charger_id": "new_unit", "security_profile": 1, "password": "n" * 24},
        )  # fmt: skip
        # the socket opened without credentials is closed: it must come back with them
        closed = await ws.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await s.close()
        status, _, s = await connect(url, ["ocpp1.6"])
        await s.close()
        assert status == 401  # approved with a password: it must now use it
        _, ws, s = await connect(url, ["ocpp1.6"], basic_auth("new_unit", "n" * 24))
        assert ws is not None
        await ws.send_str(json.dumps([2, "b2", "BootNotification", boot]))
        answer = json.loads((await ws.receive(timeout=10)).data)
        assert answer[2]["status"] == "Accepted"
        await s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and client certificates, made with openssl."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=evhub test CA",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, ext in (
        ("server", "/CN=localhost", ["-extfile", "san.ext"]),
        ("mtls_3", "/CN=mtls_3", []),
        ("other", "/CN=someone_else", []),
    ):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *ext,
        )
    return d  # fmt: skip


def _client_ssl(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return ctx


async def test_profiles_2_and_3_over_tls(tmp_path: Path, pki: Path) -> None:
    conf = {
        "chargers": [
            {"id": "tls_2", "security_profile": 2, "password": PASSWORD},
            {"id": "mtls_3", "security_profile": 3},
        ],
        "tls": {"port": 0, "certfile": str(pki / "server.pem"),
                "keyfile": str(pki / "server.key"), "ca_certs": str(pki / "ca.pem")},
    }  # fmt: skip
    async with running_hub(tmp_path, conf) as hub:
        port = hub.data["ocpp"].ports[1]
        url = f"wss://localhost:{port}/ocpp/"
        status, ws, s = await connect(
            url + "tls_2", ["ocpp1.6"], basic_auth("tls_2", PASSWORD), ssl=_client_ssl(pki, None)
        )
        assert status == 101 and ws is not None
        assert (await heartbeat(ws))[0] == 3
        await s.close()
        status, _, s = await connect(url + "mtls_3", ["ocpp1.6"], ssl=_client_ssl(pki, None))
        await s.close()
        assert status == 401  # no client certificate
        status, _, s = await connect(url + "mtls_3", ["ocpp1.6"], ssl=_client_ssl(pki, "other"))
        await s.close()
        assert status == 401  # a valid certificate, for another charger
        status, ws, s = await connect(url + "mtls_3", ["ocpp1.6"], ssl=_client_ssl(pki, "mtls_3"))
        assert status == 101 and ws is not None
        assert (await heartbeat(ws))[0] == 3
        await s.close()
