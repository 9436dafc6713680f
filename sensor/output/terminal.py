"""Stored sessions as text for a terminal: aligned tables, hex dumps, field trees.

Pure functions from the store's dicts to lines, so `xdpsensor sessions` stays
thin and the layout is tested without a terminal.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

SHORT_ID = 8  # characters of a session id shown in lists; any unique prefix is accepted back
HEXDUMP_WIDTH = 16
_DIRECTION_CODES = {"client_to_server": "c2s", "server_to_client": "s2c"}

SESSION_COLUMNS = ("ID", "FIRST (UTC)", "DURATION", "TRANSPORT", "CLIENT", "SERVER", "PROTOCOLS",
                   "PACKETS", "BYTES", "FRAMES", "END")
_NUMERIC = {"DURATION", "PACKETS", "BYTES", "FRAMES"}


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[str] = ()) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; `numeric` columns right-aligned."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = {i for i, h in enumerate(headers) if h in set(numeric)}

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts).rstrip()

    return [line(list(headers))] + [line(row) for row in cells]


def session_table(sessions: Sequence[dict[str, Any]]) -> list[str]:
    """The `sessions list` table."""
    rows = [(s["id"][:SHORT_ID], format_time(s["created_at"]), _duration(s), s["transport"],
             endpoint(s["client_host"], s["client_port"]), endpoint(s["server_host"], s["server_port"]),
             ",".join(s["protocols"]), s["packets"], s["bytes"], _frames(s), s["end_reason"])
            for s in sessions]
    return format_table(SESSION_COLUMNS, rows, _NUMERIC)


def session_details(session: dict[str, Any]) -> list[str]:
    """The `sessions show` summary, one `name: value` per line (the SPI record is shown separately)."""
    pairs = [
        ("id", session["id"]),
        ("client", endpoint(session["client_host"], session["client_port"])),
        ("server", endpoint(session["server_host"], session["server_port"])),
        ("transport", session["transport"]),
        ("protocols", ", ".join(session["protocols"]) or "-"),
        ("first packet", format_time(session["created_at"])),
        ("last packet", format_time(session["closed_at"])),
        ("state", session["state"]),
        ("end reason", session["end_reason"]),
        ("packets", session["packets"]),
        ("bytes", session["bytes"]),
        ("data bytes", session["data_bytes"]),
        ("frames", _frames(session)),
    ]
    width = max(len(name) for name, _ in pairs)
    return [f"{name + ':':<{width + 1}} {'' if value is None else value}" for name, value in pairs]


def frame_header(index: int, frame: dict[str, Any]) -> str:
    """One line naming a frame: position in the session, direction, per-direction seq, size, framer, time."""
    return (f"#{index} {_DIRECTION_CODES[frame['direction']]} seq {frame['sequence_number']} "
            f"{frame['raw_bytes_len']} B {frame['framer_name']} {format_time(frame['timestamp'])}")


def hexdump(data: bytes) -> list[str]:
    """`hexdump -C` lines: offset, 16 bytes in two groups of 8, printable ASCII between bars."""
    lines = []
    for offset in range(0, len(data), HEXDUMP_WIDTH):
        chunk = data[offset:offset + HEXDUMP_WIDTH]
        left, right = chunk[:8].hex(" "), chunk[8:].hex(" ")
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{text}|")
    return lines


def message_lines(message: dict[str, Any]) -> list[str]:
    """A decoded message (ParsedMessage dict): its type, then one aligned line per field, children indented."""
    head = f"{message['protocol_name']} {message['message_type']}"
    if message.get("display_name"):
        head += f"  {message['display_name']}"
    rows = list(_field_rows(message["fields"], 0))
    lines = [head] + format_table(("FIELD", "VALUE", "OFFSET", "SIZE"), rows, ("OFFSET", "SIZE"))
    if message.get("error"):
        lines.append(f"error: {message['error']}")
    return lines


def _field_rows(fields: Sequence[dict[str, Any]], depth: int) -> Iterable[tuple[str, str, int, int]]:
    for field in fields:
        value = field["value"]
        nested = field["children"] and isinstance(value, list)  # the children show it
        shown = field["display_value"] or ("" if value is None or nested else str(value))
        yield "  " * depth + field["name"], shown, field["offset"], field["size"]
        yield from _field_rows(field["children"], depth + 1)


def endpoint(host: str | None, port: int | None) -> str:
    """host:port, with IPv6 hosts bracketed; just the host when there is no port."""
    if host is None:
        return "-"
    shown = f"[{host}]" if ":" in host and port is not None else host
    return shown if port is None else f"{shown}:{port}"


def format_time(seconds: float | None) -> str:
    """UTC to the millisecond, the precision of SPI records."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(session: dict[str, Any]) -> str:
    first, last = session["created_at"], session["closed_at"]
    return "" if first is None or last is None else f"{last - first:.3f}s"


def _frames(session: dict[str, Any]) -> str:
    dropped = session["frames_dropped"]
    return f"{session['frame_count']}+{dropped} dropped" if dropped else str(session["frame_count"])
