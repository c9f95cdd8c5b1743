"""Clone detection: one RFID card charging on two stations at the same time cannot be one card.

Flags go on the bus (`accounts_token_clone_suspected`, kept by the recorder) and in the audit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hub.bus import Context, Event
from hub.charging.auth import normalize_token_id
from hub.charging.session import EVENT_SESSION_STARTED, EVENT_SESSION_STOPPED
from plugins.accounts import activity, store
from plugins.accounts.model import Token

if TYPE_CHECKING:
    from plugins.accounts.directory import Directory

_LOGGER = logging.getLogger(__name__)

EVENT_CLONE_SUSPECTED = "accounts_token_clone_suspected"
OVERLAP = "overlapping_sessions"  # two sessions on different stations at once: strong evidence
PRESENTED = "presented_elsewhere"  # shown at a station while charging at another: refused


class CloneWatch:
    """Checks each session of a known card as it starts and stops, and each refusal for
    ConcurrentTx. Only strong evidence (overlapping sessions) blocks a card automatically; a card
    shown elsewhere may be an offline charger's late report of an earlier use."""

    def __init__(
        self,
        directory: Directory,
        block: Callable[[str, str, Context], Awaitable[Any]],
        auto_block: bool,
    ) -> None:
        self.d = directory
        self.hub = directory.hub
        self._block = block
        self.auto_block = auto_block
        self._flagged: set[frozenset[str]] = set()
        self._unsubscribe = [
            self.hub.bus.listen(EVENT_SESSION_STARTED, self._session),
            self.hub.bus.listen(EVENT_SESSION_STOPPED, self._session),
        ]

    def close(self) -> None:
        for remove in self._unsubscribe:
            remove()

    def _watched(self, token: Token | None) -> bool:
        # An app token may start several cars of one driver; a token allowed several sessions
        # at once is shared on purpose. A card is one card.
        return token is not None and token.kind == "rfid" and not token.shared

    async def _session(self, event: Event) -> None:
        raw = event.data.get("id_tag")
        if not isinstance(raw, str) or not raw.strip():
            return
        token = self.d.snap.tokens.get(normalize_token_id(raw))
        if not self._watched(token):
            return
        assert token is not None
        since = self.hub.now() - activity.LOOKBACK
        seen = await self.d.recorder.read(lambda c: activity.sessions_of(c, token.id, since))
        pairs = activity.overlapping(seen, event.data.get("session_id", ""))
        for a, b in pairs:
            await self.flag(token, OVERLAP, [a, b], event.context)

    def presented(self, token: Token, charger: str, busy: list[activity.Seen]) -> None:
        """The token was refused on `charger` because it charges on the sessions `busy`."""
        elsewhere = [s for s in busy if not s.same_station(charger)]
        if self._watched(token) and elsewhere:
            self.hub.create_task(
                self.flag(token, PRESENTED, elsewhere, Context(), charger=charger),
                "accounts clone check",
            )

    async def flag(
        self,
        token: Token,
        evidence: str,
        seen: list[activity.Seen],
        context: Context,
        charger: str | None = None,
    ) -> None:
        # Once per evidence and sessions: the same card refused again for the same session
        # elsewhere, or the stop of a session already flagged at its start, is no news.
        key = frozenset([evidence, token.id, *(s.session_id for s in seen)])
        if key in self._flagged:
            return
        self._flagged.add(key)
        pseudonym = self.d.pseudonym(token.id)
        chargers = sorted({s.entity or f"charger.{s.station}" for s in seen} | ({charger} - {None}))
        detail = {
            "evidence": evidence,
            "chargers": chargers,
            "sessions": [s.session_id for s in seen],
        }
        _LOGGER.warning(
            "token %s is suspected to be cloned: %s on %s", pseudonym, evidence, ", ".join(chargers)
        )
        row = {
            "time": self.hub.now(),
            "kind": "clone_suspected",
            "account_id": token.account_id,
            "token": pseudonym,
            "user_id": None,
            "detail": detail,
        }
        await self.d.recorder.write_fact(lambda c: store.add_audit(c, row))
        blocked = False
        already = self.d.snap.effective(self.d.snap.tokens.get(token.id, token)).blocked
        if self.auto_block and evidence == OVERLAP and not already:
            try:
                await self._block(
                    token.id, f"clone suspected ({', '.join(chargers)})", context.child()
                )
                blocked = True
            except ValueError as err:
                _LOGGER.error("token %s could not be blocked: %s", pseudonym, err)
        org = self.d.snap.owner(token).organisation
        self.hub.bus.fire(
            EVENT_CLONE_SUSPECTED,
            {
                "token": pseudonym,
                "account_id": token.account_id,
                "organisation_id": org.id if org else None,
                **detail,
                "auto_blocked": blocked,
            },
            context,
        )
