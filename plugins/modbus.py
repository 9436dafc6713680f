"""Modbus/TCP classifier and MBAP header extractor, written only with the Arkime API.

A port of Arkime's capture/parsers/modbus.c with the same fields, so it can
stand in for the C parser. TCP sessions on port 502 (either side) whose first
payload in some direction is exactly one MBAP frame (protocol id 0, length
matching the chunk) become `modbus`. Every whole frame then adds: from the
client, its transaction id and function code; from the server, the exception
code of an exception response; and the unit and protocol ids of the frames in
each side's first chunk. Client and server are the port's roles, not who sent
the SYN, and an exception frame too short to hold its code adds none: both as
Arkime's own test captures show.
"""
import arkime
import arkime_session

UNIT_ID = arkime.field_define("modbus.unitid", "kind:integer;db:modbus.unitid;help:Modbus Unit ID")
TRANSACTION_ID = arkime.field_define(
    "modbus.transactionid", "kind:integer;db:modbus.transactionid;count:true;help:Modbus Transaction IDs")
PROTOCOL_ID = arkime.field_define(
    "modbus.protocolid", "kind:integer;db:modbus.protocolid;help:Modbus Protocol ID (should always be 0)")
FUNCTION_CODE = arkime.field_define(
    "modbus.funccode", "kind:integer;db:modbus.funccode;count:true;help:Modbus Function Codes")
EXCEPTION_CODE = arkime.field_define(
    "modbus.exccode", "kind:integer;db:modbus.exccode;count:true;help:Modbus Exception Codes")

PORT = 502
STATE = "modbus.state"  # set_attr key: (chunks seen per direction, the direction that carries requests)
MBAP_LEN = 7  # transaction id, protocol id, length, unit id
MAX_LENGTH = 255  # Arkime's bound on the MBAP length field


def _u16(data, offset):
    return data[offset] << 8 | data[offset + 1]


def _request_direction(session):
    """0 normally; 1 when the port-502 side opened the connection, since Arkime
    keys the Modbus roles on the port, not on who sent the SYN."""
    server_opened = arkime_session.get(session, "port.src") == PORT and arkime_session.get(session, "port.dst") != PORT
    return 1 if server_opened else 0


def parse(session, pb, buf, which):
    chunks, request_direction = arkime_session.get_attr(session, STATE)
    chunks[which] += 1
    from_server = which != request_direction
    data = bytes(buf)
    pos = 0
    while len(data) - pos >= MBAP_LEN:
        if _u16(data, pos + 2) != 0:
            return -1
        length = _u16(data, pos + 4)
        if not 2 <= length <= MAX_LENGTH:
            return -1  # Arkime stalls on this frame forever: same fields, and the flow can go
        end = pos + 6 + length
        if end > len(data):
            break
        function_code = data[pos + 7]
        if from_server and function_code & 0x80 and length >= 3:
            arkime_session.add_int(session, EXCEPTION_CODE, data[pos + 8])
        if not from_server:
            arkime_session.add_int(session, TRANSACTION_ID, _u16(data, pos))
            arkime_session.add_int(session, FUNCTION_CODE, function_code)
        if chunks[which] == 1:
            arkime_session.add_int(session, UNIT_ID, data[pos + 6])
            arkime_session.add_int(session, PROTOCOL_ID, 0)
        pos = end
    arkime_session.parser_buf_del(pb, which, pos)
    return 0


def classify(session, data, length, which):
    if length < MBAP_LEN or _u16(data, 2) != 0 or _u16(data, 4) - 1 != length - MBAP_LEN:
        return
    if arkime_session.has_protocol(session, "modbus"):
        return
    arkime_session.add_protocol(session, "modbus")
    arkime_session.set_attr(session, STATE, ([0, 0], _request_direction(session)))
    arkime_session.register_parser_buf(session, parse)


arkime.register_port_classifier("modbus", PORT, arkime.PORT_TCP_SRC | arkime.PORT_TCP_DST, classify)
