"""plugins/ssh.py: Arkime's own SSH captures, and handshakes built by hand from RFC 4253.

HASSH values are MD5s computed outside this code (`printf '%s' '<algorithms>' | md5sum`)
from the algorithm strings the HASSH spec defines: kex;encryption;mac;compression."""
from __future__ import annotations

import struct
from functools import partial

import pytest
from plugin_testlib import PLUGINS, claims, conversation_record, loaded_runtime, ours_and_expected, sessions_by_key

PLUGIN = PLUGINS / "ssh.py"

# Captures Arkime tagged `ssh` (protocol list of their .test files).
CAPTURES = ["arkime_synthetic", "ssh2", "ssh2-moloch-crash", "tcp_handshake_synthetic", "v6",
            "gre-sample", "tcpdump-geneve"]

KEX = b"curve25519-sha256,diffie-hellman-group14-sha256"
CLIENT_HASSH = "fccfa11c7d95c9b773dd0ba461c6a7ef"  # KEX;aes128-ctr;hmac-sha2-256;none
SERVER_HASSH = "f69de0947b6b00a6a9c5375aca5931b1"  # KEX;aes256-ctr;hmac-sha1;zlib@openssh.com,none
HOST_KEY = b"\x00\x00\x00\x0bssh-ed25519" + bytes(range(32))
HOST_KEY_B64 = "AAAAC3NzaC1lZDI1NTE5AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def _sessions(bodies):
    """Arkime's `ssh` sessions by (4-tuple, first packet): the ssh field group."""
    return sessions_by_key(bodies, lambda body: claims(body, "ssh"), lambda body: body.get("ssh", {}))


@pytest.mark.parametrize("capture", CAPTURES)
def test_fields_match_arkime_on_its_captures(shared_testdata, capture):
    ours, expected = ours_and_expected(shared_testdata, capture, PLUGIN, _sessions)
    assert ours == expected


def name_list(*names: bytes) -> bytes:
    text = b",".join(names)
    return struct.pack(">I", len(text)) + text


def binary_packet(payload: bytes) -> bytes:
    """RFC 4253 section 6: uint32 length, padding length, payload, padding (4..255 bytes)."""
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + bytes(pad)


def kexinit(enc: tuple[bytes, bytes], mac: tuple[bytes, bytes], comp: tuple[bytes, bytes]) -> bytes:
    body = bytes([20]) + bytes(range(16)) + name_list(KEX) + name_list(b"ssh-ed25519")
    for c2s, s2c in (enc, mac, comp):
        body += name_list(c2s) + name_list(s2c)
    body += name_list() + name_list() + b"\x00" + bytes(4)  # languages, first_kex_follows, reserved
    return binary_packet(body)


CLIENT_KEXINIT = kexinit((b"aes128-ctr", b"aes128-ctr"), (b"hmac-sha2-256", b"hmac-sha2-256"),
                         (b"none", b"none"))
SERVER_KEXINIT = kexinit((b"aes256-ctr", b"aes256-ctr"), (b"hmac-sha1", b"hmac-sha1"),
                         (b"zlib@openssh.com,none", b"zlib@openssh.com,none"))
# A kexinit whose client->server and server->client lists differ: each side uses its own.
MIXED_KEXINIT = kexinit((b"aes128-ctr", b"aes256-ctr"), (b"hmac-sha2-256", b"hmac-sha1"),
                        (b"none", b"zlib@openssh.com,none"))
KEX_REPLY = binary_packet(bytes([33]) + struct.pack(">I", len(HOST_KEY)) + HOST_KEY + bytes(40))


conversation = partial(conversation_record, plugins=(PLUGIN,), server_port=22)


def test_banners_hassh_and_host_key(tmp_path):
    record = conversation(tmp_path, [
        (1, b"SSH-2.0-OpenSSH_9.6 Debian\r\n"), (0, b"SSH-2.0-Test_1.0\r\n"),
        (1, SERVER_KEXINIT), (0, CLIENT_KEXINIT), (1, KEX_REPLY)])
    assert "ssh" in record["protocol"]
    assert record["ssh"] == {
        "version": ["ssh-2.0-openssh_9.6 debian", "ssh-2.0-test_1.0"], "versionCnt": 2,
        "hassh": [CLIENT_HASSH], "hasshCnt": 1, "hasshServer": [SERVER_HASSH], "hasshServerCnt": 1,
        "key": [HOST_KEY_B64], "keyCnt": 1}


def test_each_side_hashes_its_own_direction_lists(tmp_path):
    record = conversation(tmp_path, [(0, b"SSH-2.0-a\r\n"), (1, b"SSH-2.0-b\n"),
                                     (0, MIXED_KEXINIT), (1, MIXED_KEXINIT)])
    assert record["ssh"]["hassh"] == [CLIENT_HASSH]
    assert record["ssh"]["hasshServer"] == [SERVER_HASSH]


def test_kexinit_split_across_segments(tmp_path):
    cuts = [0, 3, 5, 6, 40, len(CLIENT_KEXINIT)]
    pieces = [(0, CLIENT_KEXINIT[a:b]) for a, b in zip(cuts, cuts[1:])]
    record = conversation(tmp_path, [(0, b"SSH-2.0-a\r\n"), (1, b"SSH-2.0-b\r\n"), *pieces])
    assert record["ssh"]["hassh"] == [CLIENT_HASSH]


def test_kexinit_in_the_banner_segment_is_not_hashed(tmp_path):
    """Arkime's quirk: a segment that starts with the banner is not searched further."""
    record = conversation(tmp_path, [(0, b"SSH-2.0-a\r\n" + CLIENT_KEXINIT), (1, b"SSH-2.0-b\r\n")])
    assert record["ssh"] == {"version": ["ssh-2.0-a", "ssh-2.0-b"], "versionCnt": 2}


def test_not_ssh_and_bad_lengths(tmp_path):
    plain = conversation(tmp_path, [(0, b"HELLO\r\n"), (1, b"SSH-2.0-late\r\n")])
    assert "ssh" in plain["protocol"]  # the server's first payload classifies, as in Arkime
    garbage = conversation(tmp_path, [(0, b"SSH-2.0-a\r\n"), (0, b"\xff\xff\xff\xff\x00\x14junk"),
                                      (0, CLIENT_KEXINIT)])
    assert "hassh" not in garbage["ssh"]  # an implausible length ends the parse, as in Arkime


def test_classifier_is_a_byte_prefix_for_the_kernel():
    rules = loaded_runtime(PLUGIN).offload_rules()
    assert (6, 0, b"SSH") in rules.prefixes
    assert not rules.match_all
