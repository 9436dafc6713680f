"""`-o` values: explicit FORMAT:PATH, stdout, formats inferred from extensions, and clear refusals."""
from __future__ import annotations

import json

import pytest
from output_inputs import finished, greeting_exchange, spi_record

from sensor.output import DEFAULT_DB, StoreError, open_output, parse_output_spec
from sensor.output.jsonlines import JsonLinesWriter
from sensor.output.sqlite import SqliteStore

SID = "0f0f0f0f-0000-4000-8000-000000000000"


@pytest.mark.parametrize("spec, expected", [
    ("-", ("spi", "-")),
    ("spi:-", ("spi", "-")),
    ("sqlite:out/sessions.db", ("sqlite", "out/sessions.db")),
    ("sqlite:store", ("sqlite", "store")),  # an explicit format needs no extension
    ("spi:records.txt", ("spi", "records.txt")),
    ("sessions.db", ("sqlite", "sessions.db")),
    ("x.SQLITE", ("sqlite", "x.SQLITE")),
    ("a/b.sqlite3", ("sqlite", "a/b.sqlite3")),
    ("records.jsonl", ("spi", "records.jsonl")),
    ("records.json", ("spi", "records.json")),
    ("runs/12:00.db", ("sqlite", "runs/12:00.db")),  # a colon inside a path is not a format
    ("./old:runs.db", ("sqlite", "./old:runs.db")),
    (DEFAULT_DB, ("sqlite", DEFAULT_DB)),
])
def test_spec_parsing(spec, expected):
    assert parse_output_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("eve:alerts.json", "unknown output format 'eve'"),
    ("records.txt", "cannot tell the output format of 'records.txt'"),
    ("sessions", "cannot tell the output format"),
    ("sqlite:", "no path after sqlite:"),
    ("sqlite:-", "needs a file, not stdout"),
    ("old:runs.db", "unknown output format 'old'.*./old:runs.db"),
])
def test_bad_specs_say_what_to_write(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_output_spec(spec)
    assert "sqlite:PATH" in str(info.value)


def test_sqlite_output_is_a_store(tmp_path):
    path = tmp_path / "run.db"
    frames, messages = greeting_exchange(SID)
    output = open_output(str(path))
    assert isinstance(output, SqliteStore)
    output.write(finished(spi_record(SID), frames, messages))
    output.close()
    with SqliteStore(path, readonly=True) as store:
        assert store.get_session(SID)["frame_count"] == 2
        assert [m["message_type"] for m in store.get_messages(SID)] == ["Hello", "Ack"]


def test_spi_output_writes_one_line_per_record_and_ignores_frames(tmp_path):
    path = tmp_path / "records.jsonl"
    frames, messages = greeting_exchange(SID)
    output = open_output(f"spi:{path}")
    assert isinstance(output, JsonLinesWriter)
    output.write(finished(spi_record(SID), frames, messages))
    output.write(finished(spi_record(SID, packets=6)))
    output.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [spi_record(SID), spi_record(SID, packets=6)]


def test_dash_is_stdout(capsys):
    output = open_output("-")
    output.write(finished(spi_record(SID)))
    output.close()
    assert json.loads(capsys.readouterr().out) == spi_record(SID)


def test_sqlite_output_on_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 200)
    with pytest.raises(StoreError, match="notes.db is not an SQLite session store"):
        open_output(str(path))
