"""Session, frame and message ids: uuid4 strings, unique across forked workers and runs."""
from __future__ import annotations

import os
import random
import uuid

from sensor.ids import new_id


def test_ids_are_uuid4_strings_and_do_not_repeat():
    ids = [new_id() for _ in range(10_000)]
    assert {uuid.UUID(i).version for i in ids} == {4}
    assert all(str(uuid.UUID(i)) == i for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({i[:8] for i in ids}) > 9_900  # a short prefix names a session


def test_a_forked_worker_does_not_repeat_the_parents_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids
        os.write(write, " ".join(new_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    parent = [new_id() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)


def test_seeding_the_random_module_does_not_repeat_ids():
    random.seed(7)
    first = new_id()
    random.seed(7)
    assert new_id() != first
