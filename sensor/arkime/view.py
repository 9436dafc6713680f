"""What the plugin runtime needs to know about a session.

The flows layer's Session satisfies this protocol structurally; the runtime
never imports `sensor.flows`, so the two can evolve separately."""
from typing import Protocol


class SessionView(Protocol):
    """Read-only session state. Lists indexed by direction: 0 client->server, 1 server->client."""

    id: int
    ip_protocol: int
    client_ip: str
    server_ip: str
    client_port: int
    server_port: int
    vlan: tuple
    first_ts: float
    last_ts: float
    packets: list[int]
    bytes: list[int]
    databytes: list[int]
    tcpflags: dict[str, int]  # syn syn-ack ack psh fin rst urg ece cwr ae srcZero dstZero
    first_payload: list[bytes]  # first <= 8 payload bytes per direction
    icmp_types: set[int]  # ICMP/ICMPv6 types and codes seen
    icmp_codes: set[int]
    community_id: str  # "1:<base64>", "" when not IP
    tags: set[str]
    outer: object | None  # sensor.flows.session.OuterSeen of a tunnelled session, else None
