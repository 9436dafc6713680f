"""TLS over TCP: version, cipher, session ids, SNI, JA3/JA3S and JA4, written only
with the Arkime API.

Follows Arkime 6's capture/parsers/tls.c: a session whose first payload in a
direction is a TLS handshake record (16 03 xx) carrying a ClientHello or
ServerHello becomes `tls`. The ClientHello gives the SNI (stored in `host.http`,
as Arkime does), tls.srcSessionId, tls.ja3 (MD5 of the JA3 string, GREASE
removed) and tls.ja4 / tls.ja4_r (FoxIO JA4); the ServerHello gives tls.version,
tls.cipher (Arkime's names), tls.dstSessionId and tls.ja3s, and `http2` when it
selects ALPN h2. Hellos split across TCP segments or TLS records are
reassembled (register_parser_buf). Settings match Arkime's test config:
ja3Strings=true and ja4Raw=true. JA4 follows the FoxIO spec where Arkime
differs on odd input: counts cap at 99, GREASE signature algorithms are dropped
and a non-alphanumeric ALPN uses its hex digits.

Left out: certificates (Arkime's `cert` is an array of objects, which the
Python API cannot build) and DTLS/QUIC hellos (other parsers in Arkime).
"""
import hashlib

import arkime
import arkime_session

HOST = arkime.field_get("host.http")
VERSION = arkime.field_define("tls.version", "kind:termfield;db:tls.version;count:true")
CIPHER = arkime.field_define("tls.cipher", "kind:uptermfield;db:tls.cipher;count:true")
JA3 = arkime.field_define("tls.ja3", "kind:lotermfield;db:tls.ja3;count:true")
JA3S = arkime.field_define("tls.ja3s", "kind:lotermfield;db:tls.ja3s;count:true")
JA3_STRING = arkime.field_define("tls.ja3string", "kind:lotermfield;db:tls.ja3string;count:true")
JA3S_STRING = arkime.field_define(
    "tls.ja3sstring", "kind:lotermfield;db:tls.ja3sstring;count:true")
JA4 = arkime.field_define("tls.ja4", "kind:lotermfield;db:tls.ja4;count:true")
JA4_RAW = arkime.field_define("tls.ja4_r", "kind:lotermfield;db:tls.ja4_r;count:true")
SRC_ID = arkime.field_define("tls.sessionid.src", "kind:lotermfield;db:tls.srcSessionId")
DST_ID = arkime.field_define("tls.sessionid.dst", "kind:lotermfield;db:tls.dstSessionId")

HANDSHAKE, CLIENT_HELLO, SERVER_HELLO = 0x16, 1, 2
EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIG_ALGS = 0x0000, 0x000A, 0x000B, 0x000D
EXT_ALPN, EXT_VERSIONS, EXT_ESNI, EXT_ECH = 0x0010, 0x002B, 0xFFCE, 0xFE0D
TLS12, TLS13 = 0x0303, 0x0304
ALPN_H2 = b"\x00\x03\x02h2"
HELLO_DONE = "tls.hello-done"  # set_attr key: [client side done, server side done]
BUFFER_LIMIT = 8192  # register_parser_buf's cap: a hello not complete by then is parsed as is


def _cipher_table():
    """Arkime's tls-cipher.h names by code (IANA names, upper case, `TLS_` prefix)."""
    runs = (
        (0x0000, "NULL_WITH_NULL_NULL RSA_WITH_NULL_MD5 RSA_WITH_NULL_SHA RSA_EXPORT_WITH_RC4_40_MD5"
                 " RSA_WITH_RC4_128_MD5 RSA_WITH_RC4_128_SHA RSA_EXPORT_WITH_RC2_CBC_40_MD5"
                 " RSA_WITH_IDEA_CBC_SHA RSA_EXPORT_WITH_DES40_CBC_SHA RSA_WITH_DES_CBC_SHA"
                 " RSA_WITH_3DES_EDE_CBC_SHA DH_DSS_EXPORT_WITH_DES40_CBC_SHA DH_DSS_WITH_DES_CBC_SHA"
                 " DH_DSS_WITH_3DES_EDE_CBC_SHA DH_RSA_EXPORT_WITH_DES40_CBC_SHA"
                 " DH_RSA_WITH_DES_CBC_SHA DH_RSA_WITH_3DES_EDE_CBC_SHA"
                 " DHE_DSS_EXPORT_WITH_DES40_CBC_SHA DHE_DSS_WITH_DES_CBC_SHA"
                 " DHE_DSS_WITH_3DES_EDE_CBC_SHA DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"
                 " DHE_RSA_WITH_DES_CBC_SHA DHE_RSA_WITH_3DES_EDE_CBC_SHA"
                 " DH_ANON_EXPORT_WITH_RC4_40_MD5 DH_ANON_WITH_RC4_128_MD5"
                 " DH_ANON_EXPORT_WITH_DES40_CBC_SHA DH_ANON_WITH_DES_CBC_SHA"
                 " DH_ANON_WITH_3DES_EDE_CBC_SHA"),
        (0x001E, "KRB5_WITH_DES_CBC_SHA KRB5_WITH_3DES_EDE_CBC_SHA KRB5_WITH_RC4_128_SHA"
                 " KRB5_WITH_IDEA_CBC_SHA KRB5_WITH_DES_CBC_MD5 KRB5_WITH_3DES_EDE_CBC_MD5"
                 " KRB5_WITH_RC4_128_MD5 KRB5_WITH_IDEA_CBC_MD5 KRB5_EXPORT_WITH_DES_CBC_40_SHA"
                 " KRB5_EXPORT_WITH_RC2_CBC_40_SHA KRB5_EXPORT_WITH_RC4_40_SHA"
                 " KRB5_EXPORT_WITH_DES_CBC_40_MD5 KRB5_EXPORT_WITH_RC2_CBC_40_MD5"
                 " KRB5_EXPORT_WITH_RC4_40_MD5 PSK_WITH_NULL_SHA DHE_PSK_WITH_NULL_SHA"
                 " RSA_PSK_WITH_NULL_SHA RSA_WITH_AES_128_CBC_SHA DH_DSS_WITH_AES_128_CBC_SHA"
                 " DH_RSA_WITH_AES_128_CBC_SHA DHE_DSS_WITH_AES_128_CBC_SHA"
                 " DHE_RSA_WITH_AES_128_CBC_SHA DH_ANON_WITH_AES_128_CBC_SHA"
                 " RSA_WITH_AES_256_CBC_SHA DH_DSS_WITH_AES_256_CBC_SHA DH_RSA_WITH_AES_256_CBC_SHA"
                 " DHE_DSS_WITH_AES_256_CBC_SHA DHE_RSA_WITH_AES_256_CBC_SHA"
                 " DH_ANON_WITH_AES_256_CBC_SHA RSA_WITH_NULL_SHA256 RSA_WITH_AES_128_CBC_SHA256"
                 " RSA_WITH_AES_256_CBC_SHA256 DH_DSS_WITH_AES_128_CBC_SHA256"
                 " DH_RSA_WITH_AES_128_CBC_SHA256 DHE_DSS_WITH_AES_128_CBC_SHA256"
                 " RSA_WITH_CAMELLIA_128_CBC_SHA DH_DSS_WITH_CAMELLIA_128_CBC_SHA"
                 " DH_RSA_WITH_CAMELLIA_128_CBC_SHA DHE_DSS_WITH_CAMELLIA_128_CBC_SHA"
                 " DHE_RSA_WITH_CAMELLIA_128_CBC_SHA DH_ANON_WITH_CAMELLIA_128_CBC_SHA"),
        (0x0067, "DHE_RSA_WITH_AES_128_CBC_SHA256 DH_DSS_WITH_AES_256_CBC_SHA256"
                 " DH_RSA_WITH_AES_256_CBC_SHA256 DHE_DSS_WITH_AES_256_CBC_SHA256"
                 " DHE_RSA_WITH_AES_256_CBC_SHA256 DH_ANON_WITH_AES_128_CBC_SHA256"
                 " DH_ANON_WITH_AES_256_CBC_SHA256"),
        (0x0084, "RSA_WITH_CAMELLIA_256_CBC_SHA DH_DSS_WITH_CAMELLIA_256_CBC_SHA"
                 " DH_RSA_WITH_CAMELLIA_256_CBC_SHA DHE_DSS_WITH_CAMELLIA_256_CBC_SHA"
                 " DHE_RSA_WITH_CAMELLIA_256_CBC_SHA DH_ANON_WITH_CAMELLIA_256_CBC_SHA"
                 " PSK_WITH_RC4_128_SHA PSK_WITH_3DES_EDE_CBC_SHA PSK_WITH_AES_128_CBC_SHA"
                 " PSK_WITH_AES_256_CBC_SHA DHE_PSK_WITH_RC4_128_SHA DHE_PSK_WITH_3DES_EDE_CBC_SHA"
                 " DHE_PSK_WITH_AES_128_CBC_SHA DHE_PSK_WITH_AES_256_CBC_SHA RSA_PSK_WITH_RC4_128_SHA"
                 " RSA_PSK_WITH_3DES_EDE_CBC_SHA RSA_PSK_WITH_AES_128_CBC_SHA"
                 " RSA_PSK_WITH_AES_256_CBC_SHA RSA_WITH_SEED_CBC_SHA DH_DSS_WITH_SEED_CBC_SHA"
                 " DH_RSA_WITH_SEED_CBC_SHA DHE_DSS_WITH_SEED_CBC_SHA DHE_RSA_WITH_SEED_CBC_SHA"
                 " DH_ANON_WITH_SEED_CBC_SHA RSA_WITH_AES_128_GCM_SHA256"
                 " RSA_WITH_AES_256_GCM_SHA384 DHE_RSA_WITH_AES_128_GCM_SHA256"
                 " DHE_RSA_WITH_AES_256_GCM_SHA384 DH_RSA_WITH_AES_128_GCM_SHA256"
                 " DH_RSA_WITH_AES_256_GCM_SHA384 DHE_DSS_WITH_AES_128_GCM_SHA256"
                 " DHE_DSS_WITH_AES_256_GCM_SHA384 DH_DSS_WITH_AES_128_GCM_SHA256"
                 " DH_DSS_WITH_AES_256_GCM_SHA384 DH_ANON_WITH_AES_128_GCM_SHA256"
                 " DH_ANON_WITH_AES_256_GCM_SHA384 PSK_WITH_AES_128_GCM_SHA256"
                 " PSK_WITH_AES_256_GCM_SHA384 DHE_PSK_WITH_AES_128_GCM_SHA256"
                 " DHE_PSK_WITH_AES_256_GCM_SHA384 RSA_PSK_WITH_AES_128_GCM_SHA256"
                 " RSA_PSK_WITH_AES_256_GCM_SHA384 PSK_WITH_AES_128_CBC_SHA256"
                 " PSK_WITH_AES_256_CBC_SHA384 PSK_WITH_NULL_SHA256 PSK_WITH_NULL_SHA384"
                 " DHE_PSK_WITH_AES_128_CBC_SHA256 DHE_PSK_WITH_AES_256_CBC_SHA384"
                 " DHE_PSK_WITH_NULL_SHA256 DHE_PSK_WITH_NULL_SHA384 RSA_PSK_WITH_AES_128_CBC_SHA256"
                 " RSA_PSK_WITH_AES_256_CBC_SHA384 RSA_PSK_WITH_NULL_SHA256 RSA_PSK_WITH_NULL_SHA384"
                 " RSA_WITH_CAMELLIA_128_CBC_SHA256 DH_DSS_WITH_CAMELLIA_128_CBC_SHA256"
                 " DH_RSA_WITH_CAMELLIA_128_CBC_SHA256 DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256"
                 " DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256 DH_ANON_WITH_CAMELLIA_128_CBC_SHA256"
                 " RSA_WITH_CAMELLIA_256_CBC_SHA256 DH_DSS_WITH_CAMELLIA_256_CBC_SHA256"
                 " DH_RSA_WITH_CAMELLIA_256_CBC_SHA256 DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256"
                 " DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256 DH_ANON_WITH_CAMELLIA_256_CBC_SHA256"),
        (0x00FF, "EMPTY_RENEGOTIATION_INFO_SCSV"),
        (0x1300, "- AES_128_GCM_SHA256 AES_256_GCM_SHA384 CHACHA20_POLY1305_SHA256"
                 " AES_128_CCM_SHA256 AES_128_CCM_8_SHA256"),
        (0x5600, "FALLBACK_SCSV"),
        (0xC001, "ECDH_ECDSA_WITH_NULL_SHA ECDH_ECDSA_WITH_RC4_128_SHA ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"
                 " ECDH_ECDSA_WITH_AES_128_CBC_SHA ECDH_ECDSA_WITH_AES_256_CBC_SHA"
                 " ECDHE_ECDSA_WITH_NULL_SHA ECDHE_ECDSA_WITH_RC4_128_SHA"
                 " ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
                 " ECDHE_ECDSA_WITH_AES_256_CBC_SHA ECDH_RSA_WITH_NULL_SHA ECDH_RSA_WITH_RC4_128_SHA"
                 " ECDH_RSA_WITH_3DES_EDE_CBC_SHA ECDH_RSA_WITH_AES_128_CBC_SHA"
                 " ECDH_RSA_WITH_AES_256_CBC_SHA ECDHE_RSA_WITH_NULL_SHA ECDHE_RSA_WITH_RC4_128_SHA"
                 " ECDHE_RSA_WITH_3DES_EDE_CBC_SHA ECDHE_RSA_WITH_AES_128_CBC_SHA"
                 " ECDHE_RSA_WITH_AES_256_CBC_SHA ECDH_ANON_WITH_NULL_SHA ECDH_ANON_WITH_RC4_128_SHA"
                 " ECDH_ANON_WITH_3DES_EDE_CBC_SHA ECDH_ANON_WITH_AES_128_CBC_SHA"
                 " ECDH_ANON_WITH_AES_256_CBC_SHA SRP_SHA_WITH_3DES_EDE_CBC_SHA"
                 " SRP_SHA_RSA_WITH_3DES_EDE_CBC_SHA SRP_SHA_DSS_WITH_3DES_EDE_CBC_SHA"
                 " SRP_SHA_WITH_AES_128_CBC_SHA SRP_SHA_RSA_WITH_AES_128_CBC_SHA"
                 " SRP_SHA_DSS_WITH_AES_128_CBC_SHA SRP_SHA_WITH_AES_256_CBC_SHA"
                 " SRP_SHA_RSA_WITH_AES_256_CBC_SHA SRP_SHA_DSS_WITH_AES_256_CBC_SHA"
                 " ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"
                 " ECDH_ECDSA_WITH_AES_128_CBC_SHA256 ECDH_ECDSA_WITH_AES_256_CBC_SHA384"
                 " ECDHE_RSA_WITH_AES_128_CBC_SHA256 ECDHE_RSA_WITH_AES_256_CBC_SHA384"
                 " ECDH_RSA_WITH_AES_128_CBC_SHA256 ECDH_RSA_WITH_AES_256_CBC_SHA384"
                 " ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
                 " ECDH_ECDSA_WITH_AES_128_GCM_SHA256 ECDH_ECDSA_WITH_AES_256_GCM_SHA384"
                 " ECDHE_RSA_WITH_AES_128_GCM_SHA256 ECDHE_RSA_WITH_AES_256_GCM_SHA384"
                 " ECDH_RSA_WITH_AES_128_GCM_SHA256 ECDH_RSA_WITH_AES_256_GCM_SHA384"
                 " ECDHE_PSK_WITH_RC4_128_SHA ECDHE_PSK_WITH_3DES_EDE_CBC_SHA"
                 " ECDHE_PSK_WITH_AES_128_CBC_SHA ECDHE_PSK_WITH_AES_256_CBC_SHA"
                 " ECDHE_PSK_WITH_AES_128_CBC_SHA256 ECDHE_PSK_WITH_AES_256_CBC_SHA384"
                 " ECDHE_PSK_WITH_NULL_SHA ECDHE_PSK_WITH_NULL_SHA256 ECDHE_PSK_WITH_NULL_SHA384"
                 " RSA_WITH_ARIA_128_CBC_SHA256 RSA_WITH_ARIA_256_CBC_SHA384"
                 " DH_DSS_WITH_ARIA_128_CBC_SHA256 DH_DSS_WITH_ARIA_256_CBC_SHA384"
                 " DH_RSA_WITH_ARIA_128_CBC_SHA256 DH_RSA_WITH_ARIA_256_CBC_SHA384"
                 " DHE_DSS_WITH_ARIA_128_CBC_SHA256 DHE_DSS_WITH_ARIA_256_CBC_SHA384"
                 " DHE_RSA_WITH_ARIA_128_CBC_SHA256 DHE_RSA_WITH_ARIA_256_CBC_SHA384"
                 " DH_ANON_WITH_ARIA_128_CBC_SHA256 DH_ANON_WITH_ARIA_256_CBC_SHA384"
                 " ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256 ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384"
                 " ECDH_ECDSA_WITH_ARIA_128_CBC_SHA256 ECDH_ECDSA_WITH_ARIA_256_CBC_SHA384"
                 " ECDHE_RSA_WITH_ARIA_128_CBC_SHA256 ECDHE_RSA_WITH_ARIA_256_CBC_SHA384"
                 " ECDH_RSA_WITH_ARIA_128_CBC_SHA256 ECDH_RSA_WITH_ARIA_256_CBC_SHA384"
                 " RSA_WITH_ARIA_128_GCM_SHA256 RSA_WITH_ARIA_256_GCM_SHA384"
                 " DHE_RSA_WITH_ARIA_128_GCM_SHA256 DHE_RSA_WITH_ARIA_256_GCM_SHA384"
                 " DH_RSA_WITH_ARIA_128_GCM_SHA256 DH_RSA_WITH_ARIA_256_GCM_SHA384"
                 " DHE_DSS_WITH_ARIA_128_GCM_SHA256 DHE_DSS_WITH_ARIA_256_GCM_SHA384"
                 " DH_DSS_WITH_ARIA_128_GCM_SHA256 DH_DSS_WITH_ARIA_256_GCM_SHA384"
                 " DH_ANON_WITH_ARIA_128_GCM_SHA256 DH_ANON_WITH_ARIA_256_GCM_SHA384"
                 " ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256 ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"
                 " ECDH_ECDSA_WITH_ARIA_128_GCM_SHA256 ECDH_ECDSA_WITH_ARIA_256_GCM_SHA384"
                 " ECDHE_RSA_WITH_ARIA_128_GCM_SHA256 ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"
                 " ECDH_RSA_WITH_ARIA_128_GCM_SHA256 ECDH_RSA_WITH_ARIA_256_GCM_SHA384"
                 " PSK_WITH_ARIA_128_CBC_SHA256 PSK_WITH_ARIA_256_CBC_SHA384"
                 " DHE_PSK_WITH_ARIA_128_CBC_SHA256 DHE_PSK_WITH_ARIA_256_CBC_SHA384"
                 " RSA_PSK_WITH_ARIA_128_CBC_SHA256 RSA_PSK_WITH_ARIA_256_CBC_SHA384"
                 " PSK_WITH_ARIA_128_GCM_SHA256 PSK_WITH_ARIA_256_GCM_SHA384"
                 " DHE_PSK_WITH_ARIA_128_GCM_SHA256 DHE_PSK_WITH_ARIA_256_GCM_SHA384"
                 " RSA_PSK_WITH_ARIA_128_GCM_SHA256 RSA_PSK_WITH_ARIA_256_GCM_SHA384"
                 " ECDHE_PSK_WITH_ARIA_128_CBC_SHA256 ECDHE_PSK_WITH_ARIA_256_CBC_SHA384"
                 " ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256 ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"
                 " ECDH_ECDSA_WITH_CAMELLIA_128_CBC_SHA256 ECDH_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"
                 " ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256 ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"
                 " ECDH_RSA_WITH_CAMELLIA_128_CBC_SHA256 ECDH_RSA_WITH_CAMELLIA_256_CBC_SHA384"
                 " RSA_WITH_CAMELLIA_128_GCM_SHA256 RSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256 DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " DH_RSA_WITH_CAMELLIA_128_GCM_SHA256 DH_RSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " DHE_DSS_WITH_CAMELLIA_128_GCM_SHA256 DHE_DSS_WITH_CAMELLIA_256_GCM_SHA384"
                 " DH_DSS_WITH_CAMELLIA_128_GCM_SHA256 DH_DSS_WITH_CAMELLIA_256_GCM_SHA384"
                 " DH_ANON_WITH_CAMELLIA_128_GCM_SHA256 DH_ANON_WITH_CAMELLIA_256_GCM_SHA384"
                 " ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256 ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " ECDH_ECDSA_WITH_CAMELLIA_128_GCM_SHA256 ECDH_ECDSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256 ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " ECDH_RSA_WITH_CAMELLIA_128_GCM_SHA256 ECDH_RSA_WITH_CAMELLIA_256_GCM_SHA384"
                 " PSK_WITH_CAMELLIA_128_GCM_SHA256 PSK_WITH_CAMELLIA_256_GCM_SHA384"
                 " DHE_PSK_WITH_CAMELLIA_128_GCM_SHA256 DHE_PSK_WITH_CAMELLIA_256_GCM_SHA384"
                 " RSA_PSK_WITH_CAMELLIA_128_GCM_SHA256 RSA_PSK_WITH_CAMELLIA_256_GCM_SHA384"
                 " PSK_WITH_CAMELLIA_128_CBC_SHA256 PSK_WITH_CAMELLIA_256_CBC_SHA384"
                 " DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256 DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384"
                 " RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256 RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384"
                 " ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256 ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384"
                 " RSA_WITH_AES_128_CCM RSA_WITH_AES_256_CCM DHE_RSA_WITH_AES_128_CCM"
                 " DHE_RSA_WITH_AES_256_CCM RSA_WITH_AES_128_CCM_8 RSA_WITH_AES_256_CCM_8"
                 " DHE_RSA_WITH_AES_128_CCM_8 DHE_RSA_WITH_AES_256_CCM_8 PSK_WITH_AES_128_CCM"
                 " PSK_WITH_AES_256_CCM DHE_PSK_WITH_AES_128_CCM DHE_PSK_WITH_AES_256_CCM"
                 " PSK_WITH_AES_128_CCM_8 PSK_WITH_AES_256_CCM_8 PSK_DHE_WITH_AES_128_CCM_8"
                 " PSK_DHE_WITH_AES_256_CCM_8 ECDHE_ECDSA_WITH_AES_128_CCM"
                 " ECDHE_ECDSA_WITH_AES_256_CCM ECDHE_ECDSA_WITH_AES_128_CCM_8"
                 " ECDHE_ECDSA_WITH_AES_256_CCM_8 ECCPWD_WITH_AES_128_GCM_SHA256"
                 " ECCPWD_WITH_AES_256_GCM_SHA384 ECCPWD_WITH_AES_128_CCM_SHA256"
                 " ECCPWD_WITH_AES_256_CCM_SHA384 SHA256_SHA256 SHA384_SHA384"),
        (0xC100, "GOSTR341112_256_WITH_KUZNYECHIK_CTR_OMAC GOSTR341112_256_WITH_MAGMA_CTR_OMAC"
                 " GOSTR341112_256_WITH_28147_CNT_IMIT"),
        (0xCC13, "ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
                 " DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
        (0xCCA8, "ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
                 " DHE_RSA_WITH_CHACHA20_POLY1305_SHA256 PSK_WITH_CHACHA20_POLY1305_SHA256"
                 " ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 DHE_PSK_WITH_CHACHA20_POLY1305_SHA256"
                 " RSA_PSK_WITH_CHACHA20_POLY1305_SHA256"),
        (0xD000, "- ECDHE_PSK_WITH_AES_128_GCM_SHA256 ECDHE_PSK_WITH_AES_256_GCM_SHA384"
                 " ECDHE_PSK_WITH_AES_128_CCM_8_SHA256 - ECDHE_PSK_WITH_AES_128_CCM_SHA256"),
        (0xE410, "RSA_WITH_ESTREAM_SALSA20_SHA1 RSA_WITH_SALSA20_SHA1"
                 " ECDHE_RSA_WITH_ESTREAM_SALSA20_SHA1 ECDHE_RSA_WITH_SALSA20_SHA1"
                 " ECDHE_ECDSA_WITH_ESTREAM_SALSA20_SHA1 ECDHE_ECDSA_WITH_SALSA20_SHA1"
                 " PSK_WITH_ESTREAM_SALSA20_SHA1 PSK_WITH_SALSA20_SHA1"
                 " ECDHE_PSK_WITH_ESTREAM_SALSA20_SHA1 ECDHE_PSK_WITH_SALSA20_SHA1"
                 " RSA_PSK_WITH_ESTREAM_SALSA20_SHA1 RSA_PSK_WITH_SALSA20_SHA1"
                 " DHE_PSK_WITH_ESTREAM_SALSA20_SHA1 DHE_PSK_WITH_SALSA20_SHA1"
                 " DHE_RSA_WITH_ESTREAM_SALSA20_SHA1 DHE_RSA_WITH_SALSA20_SHA1"),
    )
    table = {}
    for start, names in runs:
        for i, name in enumerate(names.split()):
            table[start + i] = "UNASSIGNED" if name == "-" else "TLS_" + name
    return table


CIPHERS = _cipher_table()


class Reader:
    """A bounds-checked cursor like Arkime's BSB: a short read returns 0 (or
    None) and leaves the reader in error with nothing remaining."""

    __slots__ = ("data", "pos", "end", "error")

    def __init__(self, data, pos=0, end=None):
        self.data, self.pos, self.error = data, pos, False
        self.end = len(data) if end is None else end

    def remaining(self):
        return 0 if self.error else max(self.end - self.pos, 0)

    def take(self, n):
        if self.error or n < 0 or self.pos + n > self.end:
            self.error = True
            return None
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self):
        chunk = self.take(1)
        return chunk[0] if chunk else 0

    def u16(self):
        chunk = self.take(2)
        return chunk[0] << 8 | chunk[1] if chunk else 0

    def sub(self, n):
        """A reader over the next n bytes, which this reader steps over."""
        start = self.pos
        self.take(n)
        return Reader(self.data, start, start + n)


def is_grease(value):
    """RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def version_name(version):
    """tls.version as Arkime prints it."""
    names = {0x0100: "SSLv1", 0x0200: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1",
             0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
    if version in names:
        return names[version]
    if version >> 8 == 0x7F:
        return "TLSv1.3-draft-%02d" % (version & 0xFF)
    return "0x%04x" % version


def cipher_name(cipher):
    return CIPHERS.get(cipher) or "0x%04x" % cipher


JA4_VERSIONS = {0x0100: "s1", 0x0200: "s2", 0x0300: "s3", 0x0301: "10", 0x0302: "11",
                0x0303: "12", 0x0304: "13"}


def _sha12(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def _alpn_chars(alpn):
    """JA4's two ALPN characters: first and last, or their hex digits if not alphanumeric."""
    if not alpn:
        return "00"
    first, last = chr(alpn[0]), chr(alpn[-1])
    if first.isascii() and first.isalnum() and last.isascii() and last.isalnum():
        return first + last
    digits = alpn.hex()
    return digits[0] + digits[-1]


def _joined(values):
    return "-".join(map(str, values))


def _ja4(version, has_sni, ciphers, extensions, sig_algs, alpn):
    """(JA4, JA4_r) from the GREASE-free ClientHello lists (FoxIO JA4 spec)."""
    prefix = "t%s%s%02d%02d%s" % (JA4_VERSIONS.get(version, "00"), "d" if has_sni else "i",
                                 min(len(ciphers), 99), min(len(extensions), 99),
                                 _alpn_chars(alpn))
    cipher_list = ",".join("%04x" % c for c in sorted(ciphers))
    ext_list = ",".join("%04x" % e for e in sorted(e for e in extensions
                                                   if e not in (EXT_SNI, EXT_ALPN)))
    if sig_algs:
        ext_list += "_" + ",".join("%04x" % a for a in sig_algs)
    return (f"{prefix}_{_sha12(cipher_list)}_{_sha12(ext_list)}",
            f"{prefix}_{cipher_list}_{ext_list}")


def parse_client_hello(msg):
    """(field, value) pairs and tags Arkime records for one ClientHello message
    (handshake header included), following tls_process_client_hello_data."""
    if len(msg) < 7:
        return [], []
    out, tags = [], []
    legacy = version = msg[4] << 8 | msg[5]
    body = Reader(msg, 6, 4 + min(len(msg) - 4, msg[2] << 8 | msg[3]))
    ciphers, extensions, groups, point_formats, sig_algs = [], [], [], [], []
    alpn, has_sni = None, False
    if body.remaining() <= 32:  # too short for any list: Arkime's JA3 then has four fields
        ja3 = "%d,,," % legacy
    else:
        body.take(32)  # random
        sid_len = body.u8()
        if sid_len > 0 and body.remaining() > sid_len:
            out.append((SRC_ID, body.data[body.pos:body.pos + sid_len].hex()))
        body.take(sid_len)
        left = body.u16()
        while not body.error and left > 0:
            cipher = body.u16()
            if not is_grease(cipher):
                ciphers.append(cipher)
            left -= 2
        body.take(body.u8())  # compression methods
        if body.remaining() >= 6:
            ext = body.sub(min(body.u16(), body.remaining()))
            while ext.remaining() >= 4:
                etype, elen = ext.u16(), ext.u16()
                if is_grease(etype):
                    ext.take(elen)
                    continue
                extensions.append(etype)
                if elen > ext.remaining():
                    break
                data = ext.sub(elen)
                if etype == EXT_SNI:
                    name = _server_name(data)
                    if name is not None:
                        out.append((HOST, name))
                        has_sni = True
                elif etype == EXT_GROUPS:
                    groups += [g for g in _u16_list(data) if not is_grease(g)]
                elif etype == EXT_POINT_FORMATS:
                    point_formats += _u8_list(data)
                elif etype == EXT_SIG_ALGS:
                    sig_algs += [a for a in _u16_list(data) if not is_grease(a)]
                elif etype == EXT_ALPN:
                    data.take(2)
                    first = data.take(data.u8())
                    if first and not data.error:
                        alpn = first
                elif etype == EXT_VERSIONS:
                    version = max([version] + [v for v in _versions(data) if not is_grease(v)])
                elif etype in (EXT_ESNI, EXT_ECH):
                    tags.append("tls:has_esni" if etype == EXT_ESNI else "tls:has_ech")
        ja3 = "%d,%s,%s,%s,%s" % (legacy, _joined(ciphers), _joined(extensions), _joined(groups),
                                  _joined(point_formats))
    out += [(JA3_STRING, ja3), (JA3, hashlib.md5(ja3.encode()).hexdigest())]
    ja4, ja4_raw = _ja4(version, has_sni, ciphers, extensions, sig_algs, alpn)
    out += [(JA4, ja4), (JA4_RAW, ja4_raw)]
    return out, tags


def _server_name(data):
    """The host_name of a server_name extension whose lengths all agree, else None."""
    if data.u16() != data.remaining() or data.u8() != 0 or data.u16() != data.remaining():
        return None
    name = data.take(data.remaining())
    if data.error:
        return None
    return name.split(b"\0", 1)[0].decode("utf-8", "replace")  # a C string ends at NUL


def _u16_list(rd):
    """u16 items of a list with a 2-byte byte length, read like Arkime: an item
    cut short reads as 0 and ends the list; an odd length reads on to the end."""
    left = rd.u16()
    out = []
    while left > 0 and not rd.error:
        out.append(rd.u16())
        left = (left - 2) & 0xFFFF
    return out


def _u8_list(rd):
    """u8 items of a list with a 1-byte length (a missing item reads as 0, once)."""
    left = rd.u8()
    out = []
    while left > 0 and not rd.error:
        out.append(rd.u8())
        left -= 1
    return out


def _versions(rd):
    """supported_versions, read as Arkime does (it counts the byte length as items)."""
    left = rd.u8()
    out = []
    while left > 0 and not rd.error:
        out.append(rd.u16())
        left -= 1
    return out


def parse_server_hello(msg):
    """(field, value) pairs and protocols Arkime records for one ServerHello message
    (handshake header included), following tls_process_server_hello."""
    rd = Reader(msg, 4, 4 + min(len(msg) - 4, msg[1] << 16 | msg[2] << 8 | msg[3]))
    version = rd.u16()
    rd.take(32)  # random
    if rd.error:
        return [], []
    out, protocols = [], []
    tls12_pending = version == TLS12  # the real version may be in supported_versions
    if not tls12_pending:
        out.append((VERSION, version_name(version)))
    if 0x0300 <= version <= TLS12:
        sid_len = rd.u8()
        if sid_len > 0 and rd.remaining() > sid_len:
            out.append((DST_ID, rd.data[rd.pos:rd.pos + sid_len].hex()))
        rd.take(sid_len)
    cipher = rd.u16()
    out.append((CIPHER, cipher_name(cipher)))
    if version < 0x0700 or version >= 0x7F16:  # TLS 1.3 drafts before 22 have no compression
        rd.take(1)
    extensions = []
    if rd.remaining() > 2:
        ext = rd.sub(min(rd.u16(), rd.remaining()))
        while ext.remaining() >= 4:
            etype, elen = ext.u16(), ext.u16()
            extensions.append(etype)
            if elen > ext.remaining():
                break
            data = ext.sub(elen)
            if etype == EXT_VERSIONS and elen == 2 and data.u16() == TLS13:
                out.append((VERSION, version_name(TLS13)))
                tls12_pending = False
            elif etype == EXT_ALPN and data.take(elen) == ALPN_H2:
                protocols.append("http2")
    if tls12_pending:
        out.append((VERSION, version_name(TLS12)))
    ja3s = "%d,%d,%s" % (version, cipher, _joined(extensions))
    out += [(JA3S_STRING, ja3s), (JA3S, hashlib.md5(ja3s.encode()).hexdigest())]
    return out, protocols


def first_handshake(stream):
    """The first handshake message of a direction's stream, joined across records.

    Returns (message, ready): ready when the message is complete or the stream
    turned to another record type first (then the message is cut short)."""
    msg = bytearray()
    pos = 0
    while pos + 5 <= len(stream):
        if stream[pos] != HANDSHAKE:
            return bytes(msg), True
        end = pos + 5 + (stream[pos + 3] << 8 | stream[pos + 4])
        msg += stream[pos + 5:end]
        if len(msg) >= 4 and len(msg) >= 4 + (msg[1] << 16 | msg[2] << 8 | msg[3]):
            return bytes(msg[:4 + (msg[1] << 16 | msg[2] << 8 | msg[3])]), True
        pos = end
    return bytes(msg), False


def record_hello(session, msg):
    """Add what a ClientHello or ServerHello yields; other messages add nothing."""
    if msg[:1] == bytes((CLIENT_HELLO,)):
        values, tags = parse_client_hello(msg)
        protocols = []
    elif msg[:1] == bytes((SERVER_HELLO,)):
        values, protocols = parse_server_hello(msg)
        tags = []
    else:
        return
    for field, value in values:
        arkime_session.add_string(session, field, value)
    for tag in tags:
        arkime_session.add_tag(session, tag)
    for protocol in protocols:
        arkime_session.add_protocol(session, protocol)


def parse(session, pb, buf, which):
    """Wait for each direction's first hello, record it, then let go of the session."""
    done = arkime_session.get_attr(session, HELLO_DONE)
    if not done[which]:
        stream = bytes(buf)
        if len(stream) < 5:
            return 0
        msg, ready = first_handshake(stream)
        if not ready and len(stream) < BUFFER_LIMIT:
            return 0
        record_hello(session, msg)
        done[which] = True
    if all(done):
        return -1
    arkime_session.parser_buf_del(pb, which, len(buf))
    return 0


def classify(session, data, length, which):
    """Arkime's tls_classify: a handshake record holding a ClientHello or ServerHello."""
    if length < 6 or data[2] > 3 or data[5] not in (CLIENT_HELLO, SERVER_HELLO):
        return
    if arkime_session.has_protocol(session, "tls"):
        return
    arkime_session.add_protocol(session, "tls")
    arkime_session.set_attr(session, HELLO_DONE, [False, False])
    arkime_session.register_parser_buf(session, parse)


arkime.register_tcp_classifier("tls", 0, b"\x16\x03", classify)
