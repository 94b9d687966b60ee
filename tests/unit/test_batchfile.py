"""The JSONL reader of the CLI: one unique id per line, whatever the ids in the file."""

from __future__ import annotations

import json
from pathlib import Path

from paradigm_trio.cli._batchfile import read_input

MESSAGES = [{"role": "user", "content": "hi"}]


def test_ids_are_unique_even_when_real_ids_look_made_up(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        "{not json",  # made-up id line-1
        json.dumps({"custom_id": "line-1", "messages": MESSAGES}),  # collides with it
        json.dumps({"custom_id": "a", "messages": MESSAGES}),
        json.dumps({"custom_id": "a", "messages": MESSAGES}),  # duplicate: a#line-4
        json.dumps({"custom_id": "a#line-4", "messages": MESSAGES}),  # collides with that
        json.dumps({"messages": MESSAGES}),  # no id: line-6
        "",
        json.dumps({"custom_id": "line-8", "messages": MESSAGES}),
        "[]",  # line-9
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(read_input(path))
    ids = [item.custom_id for item in items]
    assert len(ids) == len(set(ids)) == 8  # one per non-blank line, all different
    by_line = {item.line: item for item in items}
    assert by_line[1].custom_id == "line-1"
    assert by_line[1].request is None
    assert by_line[2].request is None  # its id was already given to line 1
    assert "duplicate custom_id 'line-1'" in (by_line[2].problem or "")
    assert by_line[3].request is not None
    assert by_line[4].custom_id == "a#line-4"
    assert by_line[5].request is None
    assert by_line[6].custom_id == "line-6"
    assert by_line[6].request is not None
    assert by_line[8].request is not None
    assert by_line[9].custom_id == "line-9"
    # the same file gives the same ids (a resume relies on it)
    assert [item.custom_id for item in read_input(path)] == ids
