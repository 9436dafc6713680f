"""The feature table names exactly what the compiled program uses, and each
probe really loads something: available features pass, made-up ones fail."""
from __future__ import annotations

import struct

import pytest

from sensor.kernel import features

_CALL = 0x85


def _helper_calls(code: bytes) -> set[int]:
    """Helper ids of every call instruction (src_reg 0: a helper, not a BPF-to-BPF call)."""
    calls = set()
    for off in range(0, len(code), 8):
        op, regs, _, imm = struct.unpack_from("<BBhi", code, off)
        if op == _CALL and regs >> 4 == 0:
            calls.add(imm)
    return calls


@pytest.mark.kernel
def test_helper_table_is_the_programs_helper_calls(program):
    from sensor.kernel.program import ProgramOptions, SensorProgram
    coarse = SensorProgram(ProgramOptions(coarse_clock=True))   # the live build where a tick is <= 1 ms
    try:
        used = _helper_calls(program.bpf.dump_func(b"xdp_sensor")) | _helper_calls(coarse.bpf.dump_func(b"xdp_sensor"))
    finally:
        coarse.close()
    assert used == set(features.HELPERS), (
        f"bpf/sensor.bpf.c calls helpers {sorted(used)}: list each in sensor/kernel/features.py HELPERS "
        "with its first kernel version (`xdpsensor check` reports them)")


@pytest.mark.kernel
def test_map_type_table_is_the_programs_map_types(program):
    from bcc.libbcc import lib
    module = program.bpf.module
    used = {lib.bpf_table_type_id(module, i) for i in range(lib.bpf_num_tables(module))}
    assert used == set(features.MAP_TYPES), (
        f"bpf/sensor.bpf.c creates map types {sorted(used)}: list each in sensor/kernel/features.py MAP_TYPES")


@pytest.mark.kernel
def test_every_feature_is_available_where_the_program_loads(program):
    missing = [f.name for f in features.features() if not f.probe()]
    assert missing == []


@pytest.mark.kernel
def test_probes_fail_for_what_no_kernel_has():
    assert not features._helper_probe(0x7FFF)()
    assert not features._map_probe(0x7FFF)()


def test_version_tuple_reads_distribution_release_strings():
    assert features.version_tuple("6.1.0-57-amd64") == (6, 1, 0)
    assert features.version_tuple("6.18.44-fc-v1272") == (6, 18, 44)
    assert features.version_tuple("5.18") == (5, 18)
    assert features.version_tuple("5.18") < features.version_tuple("6.1.0-57-amd64")
