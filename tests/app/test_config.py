"""The YAML config: every mistake named with its key before anything runs."""
import os
from pathlib import Path

import pytest

from sensor.config import BUNDLED_PLUGINS, ConfigError, load_config, parse_address, resolve_user, workers_for
from sensor.flows.key import VlanKeying
from sensor.flows.table import FlowTimeouts


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensor.yaml"
    path.write_text(text)
    return path


def test_defaults_load_the_bundled_plugins():
    cfg = load_config(None)
    assert cfg.default_plugins
    assert cfg.plugin_paths() == [BUNDLED_PLUGINS]
    assert cfg.timeouts == FlowTimeouts()


def test_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "extra.py").write_text("")
    cfg = load_config(write(tmp_path, "plugins: [mine, extra.py]\ndefault_plugins: false\n"))
    assert cfg.plugin_paths() == [tmp_path / "mine", tmp_path / "extra.py"]
    assert cfg.base_dir == tmp_path


def test_timeouts_override_only_what_is_given(tmp_path):
    cfg = load_config(write(tmp_path, "timeouts: {udp: 30, tcp_closing: 1}\n"))
    assert (cfg.timeouts.udp, cfg.timeouts.tcp_closing, cfg.timeouts.tcp) == (30.0, 1.0, 480.0)


def test_vlan_keying_as_arkimes_session_id_tracking(tmp_path):
    cfg = load_config(write(tmp_path, "vlan_key: true\nvlan_collapse: {0: [50, 100], 7: [300]}\n"))
    assert cfg.vlan_keying() == VlanKeying({50: 0, 100: 0, 300: 7})
    assert load_config(write(tmp_path, "vlan_key: false\n")).vlan_keying() is None


def test_an_empty_file_is_all_defaults(tmp_path):
    assert load_config(write(tmp_path, "")).max_frames_per_session == 1000


@pytest.mark.parametrize("text, words", [
    ("plugin: [x]\n", ["unknown key", "plugin", "known keys"]),
    ("plugins: [missing.py]\n", ["missing.py", "does not exist"]),
    ("ports: udp:53\n", ["ports must be a list"]),
    ("max_sessions: 0\n", ["max_sessions", "at least 1"]),
    ("output_queue: 0\n", ["output_queue", "at least 1"]),
    ("max_frames_per_session: yes\n", ["max_frames_per_session must be a int"]),
    ("timeouts: {tcp: -1}\n", ["timeouts.tcp", "positive"]),
    ("timeouts: {tpc: 5}\n", ["unknown key", "tpc"]),
    ("- a\n- b\n", ["top level must be a mapping"]),
    ("plugins: [unclosed\n", ["not valid YAML"]),
    ("snaplen: 0\n", ["snaplen must be between 1 and 2048"]),
    ("snaplen: 2049\n", ["snaplen must be between 1 and 2048"]),
    ("user: no-such-user-xs\n", ["user 'no-such-user-xs' does not exist", "useradd"]),
    ("user: root\ngroup: no-such-group-xs\n", ["group 'no-such-group-xs' does not exist"]),
    ("group: root\n", ["without a user"]),
    ("metrics: 'localhost:http'\n", ["metrics address", "ADDR:PORT"]),
    ("metrics: ':9477'\n", ["metrics address"]),
    ("status_interval: -1\n", ["status_interval must be 0 (off) or a positive"]),
    ("plugin_time_budget: fast\n", ["plugin_time_budget must be a int or float"]),
    ("outputs: [out.txt]\n", ["outputs:", "cannot tell the output format"]),
    ("vlan_collapse: {0: [50]}\n", ["vlan_collapse needs vlan_key: true"]),
    ("vlan_key: true\nvlan_collapse: {0: 50}\n", ["vlan_collapse: 0: give a list"]),
    ("vlan_key: true\nvlan_collapse: {0: [x]}\n", ["VLAN ids are numbers"]),
    ("vlan_key: true\nvlan_collapse: {0: [5000]}\n", ["VLAN ids are 0..4095"]),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e]\n", ["more than 200,000 nodes"]),
])
def test_mistakes_are_named(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    for word in words:
        assert word in str(err.value)


def test_unreadable_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_service_keys_resolve(tmp_path):
    cfg = load_config(write(tmp_path, "user: root\nmetrics: 9100\nstatus_interval: 0\n"))
    assert (cfg.user, cfg.group, cfg.metrics, cfg.status_interval) == ("root", None, "9100", 0)
    assert resolve_user("root", None) == (0, 0)
    assert parse_address("9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file another user cannot read")
def test_a_plugin_the_user_cannot_read_is_refused_at_load(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "p.py").write_text("")
    with pytest.raises(ConfigError, match="not readable by user nobody"):
        load_config(write(tmp_path, f"user: nobody\nplugins: [{private / 'p.py'}]\n"))


def test_outputs_that_follow_packets_run_in_one_process(tmp_path):
    """Workers forward finished sessions only: pcap positions and arkime traits need the packets."""
    pcap = f"pcap:{tmp_path / 'pcap'}"
    assert workers_for(load_config({"outputs": [pcap]}), live=True) == 1
    assert workers_for(load_config({"outputs": [f"spi:{tmp_path / 'x.jsonl'}"], "workers": 2}), live=True) == 2
    with pytest.raises(ConfigError, match="--workers 1"):
        load_config({"outputs": [pcap], "workers": 2})
    assert not (tmp_path / "pcap").exists()
