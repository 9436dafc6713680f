"""plugins/smtp.py: Arkime's own SMTP captures, and mail built by hand from RFC 5321/5322/2045/2047.

The attachment digests are computed outside this code (`md5sum`, `sha256sum` of its bytes)."""
from __future__ import annotations

import base64
from functools import partial

import pytest
from plugin_testlib import (PLUGINS, claims, comparable_group, conversation_record, drop_known_gaps, loaded_runtime,
                            ours_and_expected, sessions_by_key)

PLUGIN = PLUGINS / "smtp.py"

# Captures Arkime tagged `smtp` (protocol list of their .test files).
CAPTURES = [
    "arkime_synthetic", "ntlm_synthetic", "smtp-data-250", "smtp-data-521", "smtp-decrypted",
    "smtp-moloch-bof", "smtp-nospaces", "smtp-originating", "smtp-rcpt-553", "smtp-starttls",
    "smtp-subject-8859-b", "smtp-subject-8859-multi", "smtp-subject-8859-q",
    "smtp-subject-encoded-empty", "smtp-subject-gb2312-b", "smtp-subject-multi-nospace",
    "smtp-subject-utf8-mixed", "smtp-subject-utf8-q", "smtp-subject-windows", "smtp-zip",
    "socks5-smtp-503", "wireshark-bdat",
]
# Sessions (capture -> client ports) that cannot agree yet, and why. The test checks
# they still disagree, so a fix elsewhere shows up as a failure asking to shrink this.
GAPS = {"socks5-smtp-503": ({53709}, "SMTP inside SOCKS: needs a SOCKS plugin to re-classify the tunnel")}
# Arrays Arkime keeps with repeats; a Python plugin's fields are sets, so compare as sets.
REPEATING = ("headerField", "headerValue")
# email.ip and its GeoIP/ASN/RIR companions: ip fields cannot be set from Python.
UNSETTABLE = ("ip", "ipCnt", "GEO", "ASN", "RIR")


def _sessions(bodies):
    """The `smtp` sessions by (4-tuple, first packet): their email fields."""
    return sessions_by_key(bodies, lambda body: claims(body, "smtp"),
                           lambda body: comparable_group(body.get("email", {}), REPEATING,
                                                         lambda key: key in UNSETTABLE))


@pytest.mark.parametrize("capture", CAPTURES)
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, _sessions)
    drop_known_gaps(capture, expected, ours, GAPS)
    assert ours == expected


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=25)


ATTACHMENT = b"PK\x03\x04" + bytes(range(60))
MESSAGE = (
    b'From: "Alice" <Alice@Example.org>\r\n'
    b"To: bob@example.net, Carol <carol@example.net>\r\n"
    b"Subject: =?ISO-8859-1?Q?Andr=E9?= Pirard\r\n"  # RFC 2047 section 8
    b"Message-ID: <id1@example.org>\r\nMIME-Version: 1.0\r\nX-Mailer: probe 1\r\n"
    b"X-Custom: Keep\r\n Case\r\n"  # folded: the fold becomes one space
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
    b"--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b'--XYZ\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="a.zip"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    + b"--XYZ--\r\n.\r\n")
MAIL_FIELDS = {
    "smtpHello": ["client.example.org"], "smtpHelloCnt": 1,
    "src": ["alice@example.org"], "srcCnt": 1,
    "dst": ["bob@example.net", "carol@example.net"], "dstCnt": 2,
    "subject": ["André Pirard"], "subjectCnt": 1, "id": ["id1@example.org"], "idCnt": 1,
    "mimeVersion": ["1.0"], "mimeVersionCnt": 1, "useragent": ["probe 1"], "useragentCnt": 1,
    "contentType": ['multipart/mixed; boundary="XYZ"'], "contentTypeCnt": 1,
    "header": ["content-type", "from", "message-id", "mime-version", "subject", "to", "x-custom",
               "x-mailer"], "headerCnt": 8,
    "headerField": ["x-custom"], "headerValue": ["Keep Case"], "headerValueCnt": 1,
    "filename": ["a.zip"], "filenameCnt": 1, "bodyMagic": ["application/zip"], "bodyMagicCnt": 1,
    "md5": ["f51b1aae8262ab2463ac3815af8cca8e"], "md5Cnt": 1,
    "sha256": ["74e908c9f20eb94be651b49966f194a3b3ae5aa0ad1cbacdbd60e6062b465413"], "sha256Cnt": 1,
}
GREETING = [(1, b"220 mx.example.net ESMTP ready\r\n"), (0, b"EHLO Client.Example.ORG\r\n"),
            (1, b"250 mx.example.net\r\n")]
ENVELOPE = b"MAIL FROM:<Alice@Example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n"


@pytest.mark.parametrize("cuts", [(), (1, 2), (30, 31), (85, 86, 87), (len(MESSAGE) - 3, len(MESSAGE) - 2)])
def test_mail_split_across_segments(tmp_path, cuts):
    bounds = [0, *cuts, len(MESSAGE)]
    pieces = [(0, MESSAGE[a:b]) for a, b in zip(bounds, bounds[1:])]
    record = conversation(tmp_path, [*GREETING, (0, ENVELOPE), (1, b"250 ok\r\n250 ok\r\n354 go\r\n"),
                                     *pieces, (1, b"250 queued\r\n"), (0, b"QUIT\r\n")])
    assert "smtp" in record["protocol"]
    assert record["email"] == MAIL_FIELDS
    assert "smtp:statuscode:250" in record["tags"]


def test_bdat_chunks_then_commands(tmp_path):
    chunk = b"Subject: chunked\r\nX-A: 1\r\n\r\nbody\r\n"
    record = conversation(tmp_path, [*GREETING, (0, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"),
                                     (0, b"BDAT %d LAST\r\n%s" % (len(chunk), chunk)),
                                     (0, b"RCPT TO:<after@bdat>\r\n")])
    assert record["email"]["subject"] == ["chunked"]
    assert record["email"]["dst"] == ["after@bdat", "c@d"]  # commands parse again after the chunk


def test_auth_plain_user(tmp_path):
    record = conversation(tmp_path, [*GREETING, (0, b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n")])
    assert record["user"] == ["tim"]  # RFC 4616 section 4 example
    assert "smtp:authplain" in record["tags"]


def test_starttls_handshake_is_classified_afresh(tmp_path, tls_probe):
    record = conversation(tmp_path, [*GREETING, (0, b"STARTTLS\r\n"), (1, b"220 go ahead\r\n"),
                                     (0, b"\x16\x03\x01\x00\x05hello"), (1, b"\x16\x03\x03\x00\x02hi"),
                                     (0, b"\x17\x03\x03MAIL FROM:<hidden@x>\r\n")],
                          plugins=(PLUGIN, tls_probe))
    assert {"smtp", "tlsprobe"} <= set(record["protocol"])
    assert "smtp:starttls" in record["tags"]
    assert "src" not in record["email"]  # nothing is parsed inside TLS


def test_decrypted_capture_goes_on_after_starttls(tmp_path):
    record = conversation(tmp_path, [*GREETING, (0, b"STARTTLS\r\n"), (1, b"220 go ahead\r\n"),
                                     (0, b"EHLO again.example.org\r\n"), (0, ENVELOPE)])
    assert record["email"]["smtpHello"] == ["again.example.org", "client.example.org"]
    assert record["email"]["src"] == ["alice@example.org"]


def test_classifiers_are_byte_prefixes_for_the_kernel():
    rules = loaded_runtime(PLUGIN).offload_rules()
    assert {(6, 0, b"HELO"), (6, 0, b"EHLO"), (6, 0, b"220 ")} <= set(rules.prefixes)
    assert not rules.match_all
