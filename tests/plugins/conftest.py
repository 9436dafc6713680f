"""Fixtures of the plugin tests; their plain helpers live in plugin_testlib and spec_frames."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# plugin_testlib asserts on the tests' behalf: give its failures pytest's detailed messages.
pytest.register_assert_rewrite("plugin_testlib")


@pytest.fixture
def tls_probe(tmp_path) -> Path:
    """A plugin that claims "tlsprobe" for any TCP stream that starts like a TLS record,
    to see whether a tunnel's payload is classified afresh."""
    probe = tmp_path / "tlsprobe.py"
    probe.write_text(textwrap.dedent("""\
        import arkime, arkime_session
        def classify(session, data, length, which):
            arkime_session.add_protocol(session, "tlsprobe")
        arkime.register_tcp_classifier("tlsprobe", 0, b"\\x16\\x03", classify)
        """))
    return probe
