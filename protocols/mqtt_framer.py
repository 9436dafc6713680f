"""Custom framer script (ProtoPoke contract): cut an MQTT byte stream into control packets.

An MQTT packet is a type/flags byte, a remaining length of 1-4 bytes (7 bits
each, least significant first, bit 7 = more follows), then that many bytes,
so the built-in length_prefix framer cannot cut it. ``state`` is shared by both
directions of a session: each keeps its own buffer under its direction name.
A fifth length byte means the stream is not MQTT: the buffer goes out as one
frame and framing restarts, as the length_prefix framer does.
"""

MAX_PACKET = 16 * 1024 * 1024  # bigger packets are flushed whole, like length_prefix's cap


def _packet_size(buf, start):
    """Size of the packet at ``start``, None if its header is not all here, -1 if malformed."""
    remaining = 0
    for index in range(4):
        at = start + 1 + index
        if at >= len(buf):
            return None
        byte = buf[at]
        remaining |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return 1 + index + 1 + remaining
    return -1


def on_data(data, state, direction):
    buf = state.setdefault(direction, bytearray())
    buf += data
    frames = []
    start = 0
    while start < len(buf):
        size = _packet_size(buf, start)
        if size is None:
            break
        if size < 0 or size > MAX_PACKET:
            frames.append(bytes(buf[start:]))
            start = len(buf)
            break
        if len(buf) - start < size:
            break
        frames.append(bytes(buf[start:start + size]))
        start += size
    del buf[:start]
    return frames


def on_flush(state, direction):
    buf = state.pop(direction, b"")
    return [bytes(buf)] if buf else []
