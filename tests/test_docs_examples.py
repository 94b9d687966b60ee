"""Run the examples of the docs against the mock server, so the docs stay correct.

The convention (followed by ``docs/tutorial.md`` and the ``docs/howto-*.md`` pages listed
in ``PAGES``):

* A runnable example is a MyST ``code-block`` directive whose ``:name:`` starts with
  ``example-``::

      ```{code-block} python
      :name: example-howto-batching-stream
      :caption: stream.py

      import trio
      ...
      async def main():
          ...

      if __name__ == "__main__":
          trio.run(main)
      ```

  Plain ```` ```python ```` fences are illustrations and are not run.
* Every example is a whole script that defines ``async def main()`` and ends by calling
  ``trio.run(main)`` under ``if __name__ == "__main__":``.  The test executes the source
  under another ``__name__`` and awaits ``main()`` itself, inside the test's trio run.
* The pages about blocking code (``BLOCKING_PAGES``: notebooks, asyncio applications)
  follow the same convention with what such code runs: a blocking ``def main()`` called
  by ``main()``, or ``async def main()`` run by ``asyncio.run(main())``.  The test runs
  it in a worker thread (``trio.to_thread``), as a script's main thread would.
* Before that, the test starts a mock server on ``127.0.0.1`` and sets
  ``PARADIGM_BASE_URL`` and ``PARADIGM_API_KEY`` to point at it, so examples written for
  the real API (``pt.Client()`` with no arguments) talk to the mock.  Examples may also
  start their own mock with ``mock_server.serve(...)``.  ``MOCK_CONFIGS`` gives an
  example a mock with different settings than ``DEFAULT_MOCK``.  The mock is fast here so
  that the whole file runs in a few seconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

import mock_server as ms

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = (
    "tutorial.md",
    "howto-batching.md",
    "howto-retries-timeouts.md",
    "howto-rate-limits.md",
    "howto-streaming.md",
    "howto-enterprise-networks.md",
    "howto-observe.md",
    "howto-embeddings.md",
    "howto-structured.md",
)
BLOCKING_PAGES = ("howto-notebooks.md", "howto-asyncio.md")

_BLOCK = re.compile(
    r"^```\{code-block\}[ \t]+python[ \t]*\n"  # the opening fence
    r"((?::[\w-]+:[^\n]*\n)+)"  # the directive's options
    r"\n"
    r"(.*?)"  # the code
    r"^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_NAME = re.compile(r"^:name:[ \t]+(\S+)[ \t]*$", re.MULTILINE)

DEFAULT_MOCK = ms.MockConfig(seed=0, latency=ms.Latency.fixed(0.01))
MOCK_CONFIGS: dict[str, ms.MockConfig] = {
    # The faults the page starts its mock with (``--fault ... --retry-after 0.2``).
    "example-howto-retries-events": ms.MockConfig(
        seed=0,
        latency=ms.Latency.fixed(0.01),
        faults=ms.FaultRates(server_error=0.3, rate_limit=0.1),
        retry_after=0.2,
    ),
    # Answers that do not match the schema, for the re-ask policy to act on.
    "example-howto-structured-reask": ms.MockConfig(
        seed=2, latency=ms.Latency.fixed(0.01), faults=ms.FaultRates(invalid_output=0.5)
    ),
    # Slower than the example's Timeouts.attempt, so that the timeout branch runs.
    "example-howto-retries-override": ms.MockConfig(seed=0, latency=ms.Latency.fixed(0.5)),
}

TIME_LIMIT = 10.0
"""Seconds any one example may take."""


def extract_examples(page: str) -> list[tuple[str, str]]:
    """The ``(name, source)`` of every runnable example of a docs page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    examples = []
    for match in _BLOCK.finditer(text):
        name = _NAME.search(match.group(1))
        if name is not None and name.group(1).startswith("example-"):
            examples.append((name.group(1), match.group(2)))
    return examples


ALL_EXAMPLES = [
    (page, *example) for page in PAGES + BLOCKING_PAGES for example in extract_examples(page)
]


def test_every_page_has_examples() -> None:
    pages_with_examples = {page for page, _name, _source in ALL_EXAMPLES}
    assert pages_with_examples == set(PAGES + BLOCKING_PAGES)


def test_example_names_are_unique() -> None:
    names = [name for _page, name, _source in ALL_EXAMPLES]
    assert len(names) == len(set(names))


def test_examples_follow_the_convention() -> None:
    for page, name, source in ALL_EXAMPLES:
        if page in BLOCKING_PAGES:
            ends = ('if __name__ == "__main__":\n    main()', "asyncio.run(main())")
            assert "def main(" in source, name
            assert any(end in source for end in ends), name
            continue
        assert "async def main(" in source, name
        assert 'if __name__ == "__main__":\n    trio.run(main)' in source, name


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("page", "name", "source"),
    ALL_EXAMPLES,
    ids=[name for _page, name, _source in ALL_EXAMPLES],
)
async def test_example_runs(
    page: str,
    name: str,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # dont_inherit: the example runs as written, without this module's
    # ``from __future__ import annotations`` (pydantic models resolve their annotations).
    code = compile(source, f"{DOCS / page}:{name}", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {"__name__": f"docs_example_{name.replace('-', '_')}"}
    exec(code, namespace)
    async with ms.serve(MOCK_CONFIGS.get(name, DEFAULT_MOCK), host="127.0.0.1") as server:
        monkeypatch.setenv("PARADIGM_BASE_URL", server.url)
        monkeypatch.setenv("PARADIGM_API_KEY", "docs-example-key")
        with trio.fail_after(TIME_LIMIT):
            if page in BLOCKING_PAGES:
                await trio.to_thread.run_sync(_blocking_main, namespace["main"])
            else:
                await namespace["main"]()
    assert capsys.readouterr().out, f"{name} printed nothing"


def _blocking_main(main: Any) -> None:
    """Run a blocking page's ``main`` as its script would (see the module docstring)."""
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(main):
        asyncio.run(main())
    else:
        main()
