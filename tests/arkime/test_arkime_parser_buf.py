"""register_parser_buf: whole-buffer delivery, 8 KiB cap, del and skip."""
import pytest

from sensor.arkime.errors import ArkimeHandleError
from sensor.arkime.session import ParserBuf


def test_buffer_accumulates_until_deleted(rt, sess, start):
    h = start()
    seen = []

    def parser(session, pb, buf, which):
        assert buf.readonly
        seen.append(bytes(buf))
        data = bytes(buf)
        if b"\n" in data:
            sess.parser_buf_del(pb, which, data.index(b"\n") + 1)
        return 0
    sess.register_parser_buf(h, parser)
    rt.payload(h, 0, b"hel")
    rt.payload(h, 0, b"lo\nwor")
    rt.payload(h, 0, b"ld\n")
    rt.payload(h, 1, b"other")
    assert seen == [b"hel", b"hello\nwor", b"world\n", b"other"]


def test_cap_at_8_kib_drops_the_rest(rt, sess, start):
    h = start()
    sizes = []
    sess.register_parser_buf(h, lambda s, pb, buf, w: sizes.append(len(buf)))
    rt.payload(h, 0, b"a" * 5000)
    rt.payload(h, 0, b"b" * 5000)
    rt.payload(h, 0, b"c" * 10)
    assert sizes == [5000, 8192, 8192]


def test_del_and_skip_rules():
    pb = ParserBuf(1)
    pb.add(0, b"0123456789")
    pb.delete(0, 0)
    pb.delete(0, -3)
    assert bytes(pb.bufs[0]) == b"0123456789"
    pb.delete(0, 4)
    assert bytes(pb.bufs[0]) == b"456789"
    pb.skip(0, 2)  # n <= len: same as del
    assert bytes(pb.bufs[0]) == b"6789" and pb.skipping[0] == 0
    pb.skip(0, 10)  # n > len: empty and skip 6 future bytes
    assert bytes(pb.bufs[0]) == b"" and pb.skipping[0] == 6
    pb.add(0, b"abcd")  # all skipped
    assert bytes(pb.bufs[0]) == b"" and pb.skipping[0] == 2
    pb.add(0, b"efgh")
    assert bytes(pb.bufs[0]) == b"gh" and pb.skipping[0] == 0
    pb.delete(0, 100)  # n >= len empties
    assert bytes(pb.bufs[0]) == b""
    assert bytes(pb.bufs[1]) == b""  # directions are separate


def test_skip_through_module_across_chunks(rt, sess, start):
    h = start()
    seen = []

    def parser(session, pb, buf, which):
        seen.append(bytes(buf))
        if bytes(buf).startswith(b"LEN"):
            sess.parser_buf_skip(pb, which, 3 + 10)  # header + 10-byte body
    sess.register_parser_buf(h, parser)
    rt.payload(h, 0, b"LEN01234")
    rt.payload(h, 0, b"56789NEXT")
    assert seen == [b"LEN01234", b"NEXT"]


def test_buffer_parser_minus_one_and_exception_unregister(rt, sess, start):
    h = start()
    calls = []
    sess.register_parser_buf(h, lambda s, pb, b, w: calls.append("a") or -1)

    def bad(s, pb, b, w):
        calls.append("b")
        raise ValueError("x")
    sess.register_parser_buf(h, bad)
    rt.payload(h, 0, b"12")
    rt.payload(h, 0, b"34")
    assert calls == ["a", "b"]
    assert rt.state(h).parsers == [] and rt.errors.counts["parser_buf:test_buffer_parser_minus_one_and_exception_unregister.<locals>.bad"] == 1


def test_kept_view_does_not_break_the_buffer(rt, sess, start):
    h = start()
    kept = []
    sess.register_parser_buf(h, lambda s, pb, buf, w: kept.append(buf[0:2]))  # outlives the call
    rt.payload(h, 0, b"ab")
    rt.payload(h, 0, b"cd")
    assert bytes(rt.state(h).parsers[0].buf.bufs[0]) == b"abcd"
    assert bytes(kept[0]) == b"ab"


def test_parser_buf_argument_checks(rt, sess, start):
    h = start()
    handles = []
    sess.register_parser_buf(h, lambda s, pb, b, w: handles.append(pb))
    rt.payload(h, 0, b"ab")
    (pb,) = handles
    assert pb != h and pb != 0
    with pytest.raises(ValueError):
        sess.parser_buf_del(pb, 2, 1)
    with pytest.raises(TypeError):
        sess.parser_buf_skip(pb, 0, "1")
    with pytest.raises(ArkimeHandleError):
        sess.parser_buf_del(h, 0, 1)  # a session handle is not a parser buffer
    rt.session_ended(h)
    with pytest.raises(ArkimeHandleError):
        sess.parser_buf_del(pb, 0, 1)  # freed with its session
