"""pcap/pcapng reading on files built in the test (scapy or by hand) and on Arkime's captures."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from scapy.all import PcapNgWriter, RawPcapReader, wrpcap
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from sensor.capture.pcapfile import (
    BadMagic, PcapError, PcapRecord, TruncatedCapture, iter_records, read_pcap, write_pcap,
)

ARKIME_PCAPS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "arkime-pcap"


def _pcap(order: str, magic: int, linktype: int, records: list[tuple[int, int, bytes, int]]) -> bytes:
    """A classic pcap: records are (seconds, fraction, data, wire_len)."""
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for seconds, fraction, data, wire_len in records:
        out += struct.pack(order + "IIII", seconds, fraction, len(data), wire_len) + data
    return out


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _shb(order: str) -> bytes:
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(order: str, linktype: int, options: bytes = b"") -> bytes:
    if options:
        options += _option(order, 0, b"")
    return _block(order, 1, struct.pack(order + "HHI", linktype, 0, 65535) + options)


def _epb(order: str, iface: int, ticks: int, data: bytes, wire_len: int) -> bytes:
    head = struct.pack(order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire_len)
    return _block(order, 6, head + data)


def _read_all(data: bytes) -> tuple[list[PcapRecord], PcapError | None]:
    records: list[PcapRecord] = []
    try:
        for record in iter_records(io.BytesIO(data)):
            records.append(record)
    except PcapError as error:
        return records, error
    return records, None


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"
    assert write_pcap(path, [(1700000000.5, b"\x01\x02\x03"), (1700000001.000001, b"abcd")], linktype=101) == 2
    records = list(read_pcap(path))
    assert [(r.linktype, r.data, r.wire_len) for r in records] == [(101, b"\x01\x02\x03", 3), (101, b"abcd", 4)]
    assert records[0].timestamp == pytest.approx(1700000000.5, abs=1e-6)
    assert records[1].timestamp == pytest.approx(1700000001.000001, abs=1e-6)


def test_reads_scapy_pcap(tmp_path: Path) -> None:
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP(dport=n) / b"x" for n in range(3)]
    for n, frame in enumerate(frames):
        frame.time = 1000 + n / 4
    wrpcap(str(tmp_path / "s.pcap"), frames)
    records = list(read_pcap(tmp_path / "s.pcap"))
    assert [r.data for r in records] == [bytes(f) for f in frames]
    assert [r.timestamp for r in records] == [1000.0, 1000.25, 1000.5]
    assert {r.linktype for r in records} == {1}


@pytest.mark.parametrize("order", ["<", ">"])
def test_byte_orders_and_nanosecond_magic(order: str) -> None:
    micro = _pcap(order, 0xA1B2C3D4, 1, [(10, 250000, b"ab", 60)])
    nano = _pcap(order, 0xA1B23C4D, 113, [(10, 250000001, b"cd", 2)])
    assert _read_all(micro) == ([PcapRecord(10.25, 1, b"ab", 60)], None)
    (record,), error = _read_all(nano)
    assert error is None
    assert (record.linktype, record.data, record.wire_len) == (113, b"cd", 2)
    assert record.timestamp == pytest.approx(10.250000001, abs=1e-9)


def test_linktype_fcs_bits_are_masked() -> None:
    data = _pcap("<", 0xA1B2C3D4, 0x14000000 | 1, [(1, 0, b"z", 1)])
    assert _read_all(data)[0][0].linktype == 1


def test_unknown_linktype_still_yields_records() -> None:
    records, error = _read_all(_pcap("<", 0xA1B2C3D4, 239, [(1, 0, b"odd", 3)]))
    assert error is None and records == [PcapRecord(1.0, 239, b"odd", 3)]


def test_truncated_final_record_keeps_earlier_ones() -> None:
    data = _pcap("<", 0xA1B2C3D4, 1, [(1, 0, b"first", 5), (2, 0, b"second", 6)])
    records, error = _read_all(data[:-3])
    assert [r.data for r in records] == [b"first"]
    assert isinstance(error, TruncatedCapture)
    records, error = _read_all(data[:-len(b"second") - 7])  # cut inside the second record header
    assert [r.data for r in records] == [b"first"]
    assert isinstance(error, TruncatedCapture)


def test_header_only_file_is_empty() -> None:
    assert _read_all(_pcap("<", 0xA1B2C3D4, 1, [])) == ([], None)


@pytest.mark.parametrize("data", [b"", b"\xd4\xc3", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_short_files(data: bytes) -> None:
    assert isinstance(_read_all(data)[1], TruncatedCapture)


def test_bad_magic() -> None:
    with pytest.raises(BadMagic, match="magic"):
        list(iter_records(io.BytesIO(b"GIF89a" + bytes(40))))


def test_corrupt_record_length() -> None:
    data = _pcap("<", 0xA1B2C3D4, 1, []) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 10)
    records, error = _read_all(data)
    assert records == [] and type(error) is PcapError


def test_scapy_pcapng(tmp_path: Path) -> None:
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst="10.9.8.7") / UDP() / b"ng"
    frame.time = 1700000000.125
    writer = PcapNgWriter(str(tmp_path / "s.pcapng"))
    writer.write(frame)
    writer.close()
    (record,) = list(read_pcap(tmp_path / "s.pcapng"))
    assert (record.linktype, record.data, record.wire_len) == (1, bytes(frame), len(frame))
    assert record.timestamp == pytest.approx(1700000000.125, abs=1e-6)


def test_pcapng_interfaces_resolutions_and_sections() -> None:
    le, be = "<", ">"
    data = b"".join([
        _shb(le),
        _idb(le, 1, _option(le, 9, bytes([9]))),  # nanoseconds
        _idb(le, 101, _option(le, 9, bytes([0x80 | 10])) + _option(le, 14, struct.pack("<q", 100))),  # 2^-10 s, +100 s
        _block(le, 4, b"\x00\x00\x00\x00"),  # name resolution block: skipped
        _epb(le, 0, 1_700_000_000_500_000_000, b"eth", 1514),
        _epb(le, 1, 2048 + 512, b"raw-ip", 6),
        _block(le, 3, struct.pack("<I", 5) + b"simpl"),  # simple packet block, interface 0
        _shb(be),  # a new section, other byte order: interface ids restart
        _idb(be, 113),  # default resolution: microseconds
        _epb(be, 0, 1_500_000, b"sll", 3),
    ])
    records, error = _read_all(data)
    assert error is None
    assert [(r.linktype, r.data, r.wire_len) for r in records] == [
        (1, b"eth", 1514), (101, b"raw-ip", 6), (1, b"simpl", 5), (113, b"sll", 3),
    ]
    assert records[0].timestamp == pytest.approx(1700000000.5, abs=1e-6)
    assert records[1].timestamp == 102.5
    assert records[2].timestamp == 102.5  # no timestamp in an SPB: the previous one is kept
    assert records[3].timestamp == 1.5


def test_pcapng_truncated_and_bad_interface() -> None:
    good = _shb("<") + _idb("<", 1) + _epb("<", 0, 1_000_000, b"one", 3)
    records, error = _read_all(good + _epb("<", 0, 2_000_000, b"two", 3)[:-6])
    assert [r.data for r in records] == [b"one"] and isinstance(error, TruncatedCapture)
    records, error = _read_all(good + _epb("<", 4, 2_000_000, b"two", 3))
    assert [r.data for r in records] == [b"one"]
    assert type(error) is PcapError and "interface 4" in str(error)


@pytest.mark.parametrize("options, ticks", [
    (_option("<", 9, b"\x80"), 2**63),                             # one tick a second: year 3e11
    (_option("<", 14, struct.pack("<q", 2**62)), 5),                # offset of 4.6e18 s
    (_option("<", 14, struct.pack("<q", -100)), 1_000_000),         # before 1970
])
def test_pcapng_timestamps_out_of_range_are_a_corrupt_file(options, ticks) -> None:
    good = _shb("<") + _idb("<", 1) + _epb("<", 0, 1_000_000, b"one", 3)
    records, error = _read_all(good + _idb("<", 1, options) + _epb("<", 1, ticks, b"two", 3))
    assert [r.data for r in records] == [b"one"]
    assert type(error) is PcapError and "interface 1's if_tsresol or if_tsoffset" in str(error)


@pytest.mark.skipif(not ARKIME_PCAPS.is_dir(), reason=f"Arkime test captures not found at {ARKIME_PCAPS}")
def test_every_arkime_capture_reads_like_scapy() -> None:
    """Every file parses, and yields the same frames and lengths as scapy's raw reader."""
    paths = sorted(ARKIME_PCAPS.glob("*.pcap"))
    assert paths
    for path in paths:
        ours = [(r.data, r.wire_len) for r in read_pcap(path)]
        with RawPcapReader(str(path)) as reader:
            theirs = [(data, meta.wirelen) for data, meta in reader]
        assert ours == theirs, path.name
