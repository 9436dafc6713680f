"""Session direction and lifecycle states, with ProtoPoke's exact values."""

from __future__ import annotations

from enum import Enum
from typing import Literal

# Why a session ended, as reported in SessionEnded events.
EndReason = Literal["fin", "rst", "timeout", "evicted", "shutdown", "terminated"]


class Direction(Enum):
    """Which way bytes flow within a session; values match ProtoPoke's serialised form."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    def opposite(self) -> Direction:
        """The other direction of the same session."""
        if self is Direction.CLIENT_TO_SERVER:
            return Direction.SERVER_TO_CLIENT
        return Direction.CLIENT_TO_SERVER

    @property
    def index(self) -> int:
        """0 for client->server, 1 for server->client: a slot in per-direction pairs."""
        return 0 if self is Direction.CLIENT_TO_SERVER else 1


class SessionState(Enum):
    """Session lifecycle; the spaces in the values are ProtoPoke's and are kept."""

    CONNECTING = "connecting"
    ACTIVE = "active"
    ONLY_SERVER = "only server"
    ONLY_CLIENT = "only client"
    CLOSED = "closed"


class StateTrigger(Enum):
    """What the session table observed that may move a session to another state."""

    ESTABLISHED = "established"  # a non-SYN packet after the handshake, or a mid-stream pickup
    CLIENT_FIN = "client fin"
    SERVER_FIN = "server fin"
    RESET = "reset"
    ENDED = "ended"  # timeout, eviction or shutdown


# The allowed transitions, in one table (h11-style). A pair that is not listed
# leaves the state unchanged: a passive sensor records what it saw, it never
# rejects traffic, so odd sequences (a FIN repeated, data after a FIN) are not errors.
_TRANSITIONS: dict[tuple[SessionState, StateTrigger], SessionState] = {
    (SessionState.CONNECTING, StateTrigger.ESTABLISHED): SessionState.ACTIVE,
    (SessionState.CONNECTING, StateTrigger.CLIENT_FIN): SessionState.ONLY_SERVER,
    (SessionState.CONNECTING, StateTrigger.SERVER_FIN): SessionState.ONLY_CLIENT,
    (SessionState.ACTIVE, StateTrigger.CLIENT_FIN): SessionState.ONLY_SERVER,
    (SessionState.ACTIVE, StateTrigger.SERVER_FIN): SessionState.ONLY_CLIENT,
    (SessionState.ONLY_SERVER, StateTrigger.SERVER_FIN): SessionState.CLOSED,
    (SessionState.ONLY_CLIENT, StateTrigger.CLIENT_FIN): SessionState.CLOSED,
    **{(state, StateTrigger.RESET): SessionState.CLOSED for state in SessionState},
    **{(state, StateTrigger.ENDED): SessionState.CLOSED for state in SessionState},
}


def next_state(state: SessionState, trigger: StateTrigger) -> SessionState:
    """The state after `trigger`; unchanged when the table has no entry for the pair."""
    return _TRANSITIONS.get((state, trigger), state)
