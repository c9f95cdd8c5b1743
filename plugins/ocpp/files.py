"""Files chargers fetch from or send to the hub over HTTP: firmware downloads, diagnostics and
log uploads. Each URL carries a random, expiring token issued for one charger and one job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hub.core import Hub

_LOGGER = logging.getLogger(__name__)

PREFIX = "/ocpp-files"
TOKEN_LIFETIME = timedelta(hours=24)
MAX_UPLOAD = 64 * 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
EVENT_UPLOADED = "ocpp_file_uploaded"


@dataclass(frozen=True, slots=True)
class Grant:
    charger_id: str
    kind: str  # "firmware" (download) or "upload"
    name: str  # firmware file name, or the upload's label
    expires: datetime


class FileService:
    """Issues tokens and serves the two routes on the OCPP listener (chargers reach that one)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        base = hub.config_dir or Path(".")
        self.firmware_dir = base / "firmware"
        self.upload_dir = base / "diagnostics"
        self._grants: dict[str, Grant] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PREFIX + "/firmware/{token}/{name}", self._download)
        app.router.add_route("PUT", PREFIX + "/upload/{token}/{name}", self._upload)
        app.router.add_route("POST", PREFIX + "/upload/{token}/{name}", self._upload)
        app.router.add_route("POST", PREFIX + "/upload/{token}", self._upload)

    def _issue(self, charger_id: str, kind: str, name: str) -> str:
        now = self.hub.now()
        self._grants = {t: g for t, g in self._grants.items() if g.expires > now}
        token = secrets.token_urlsafe(24)
        self._grants[token] = Grant(charger_id, kind, name, now + TOKEN_LIFETIME)
        return token

    def firmware_url(self, base: str, charger_id: str, name: str) -> str:
        if not _SAFE_NAME.match(name) or not (self.firmware_dir / name).is_file():
            raise FileNotFoundError(f"no firmware file {name!r} in {self.firmware_dir}")
        token = self._issue(charger_id, "firmware", name)
        return f"{base}{PREFIX}/firmware/{token}/{name}"

    def upload_url(self, base: str, charger_id: str, label: str) -> str:
        return f"{base}{PREFIX}/upload/{self._issue(charger_id, 'upload', label)}"

    def _grant(self, request: web.Request, kind: str) -> Grant:
        grant = self._grants.get(request.match_info["token"])
        if grant is None or grant.kind != kind or grant.expires <= self.hub.now():
            raise web.HTTPNotFound()
        return grant

    async def _download(self, request: web.Request) -> web.StreamResponse:
        grant = self._grant(request, "firmware")
        if request.match_info["name"] != grant.name:
            raise web.HTTPNotFound()
        _LOGGER.info("%s downloads firmware %s", grant.charger_id, grant.name)
        return web.FileResponse(self.firmware_dir / grant.name)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        grant = self._grant(request, "upload")
        name = request.match_info.get("name") or "upload.bin"
        if not _SAFE_NAME.match(name):
            name = "upload.bin"
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            part = await reader.next()
            if part is None or not hasattr(part, "read_chunk"):
                raise web.HTTPBadRequest(text="multipart upload without a file")
            if getattr(part, "filename", None) and _SAFE_NAME.match(part.filename):
                name = part.filename
            chunks = _part_chunks(part)
        else:
            chunks = request.content.iter_chunked(65536)
        stamp = self.hub.now().strftime("%Y%m%dT%H%M%SZ")
        target = self.upload_dir / grant.charger_id / f"{stamp}-{name}"
        size = await _save(chunks, target)
        self._grants.pop(request.match_info["token"], None)  # one upload per grant
        self.hub.bus.fire(
            EVENT_UPLOADED,
            {"charger_id": grant.charger_id, "label": grant.name, "path": str(target),
             "bytes": size},
        )  # fmt: skip
        return web.Response(status=201, text="stored\n")


async def _part_chunks(part: object):  # type: ignore[no-untyped-def]
    while True:
        chunk = await part.read_chunk(65536)  # type: ignore[attr-defined]
        if not chunk:
            return
        yield chunk


async def _save(chunks, target: Path) -> int:  # type: ignore[no-untyped-def]
    """Stream to disk; a body over MAX_UPLOAD is refused and nothing partial is kept."""
    loop = asyncio.get_running_loop()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    size = 0
    fh = await loop.run_in_executor(None, partial.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=size)
            await loop.run_in_executor(None, fh.write, chunk)
        await loop.run_in_executor(None, fh.close)
        partial.replace(target)
    finally:
        fh.close()
        partial.unlink(missing_ok=True)
    return size
