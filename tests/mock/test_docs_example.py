"""The pytest example of docs/mock-server.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "mock-server.md"


def _example() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: pytest -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "the pytest example block is missing from the docs"
    return match.group(1)


@pytest.mark.anyio
async def test_docs_pytest_example_passes() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(_example(), str(DOC), "exec"), namespace)
    await namespace["test_fetch_greeting_retries_then_succeeds"]()
