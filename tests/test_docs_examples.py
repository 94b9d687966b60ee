"""Run the code of the docs against the mock server, so that a page cannot drift from its test.

Every Python code block of ``README.md`` and ``docs/*.md`` is one of these (the test
``test_every_python_block_is_run_or_marked`` fails on a block that is none of them):

* **An example**: a MyST ``code-block`` directive whose ``:name:`` starts with
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

  It is a whole script that defines ``async def main()`` and ends by calling
  ``trio.run(main)`` under ``if __name__ == "__main__":``.  The test executes the source
  under another ``__name__`` and awaits ``main()`` itself, inside the test's trio run.
  The pages about blocking code (``BLOCKING_PAGES``: notebooks, asyncio applications)
  follow the same convention with what such code runs: a blocking ``def main()`` called
  by ``main()``, or ``async def main()`` run by ``asyncio.run(main())``.  The test runs
  it in a worker thread (``trio.to_thread``), as a script's main thread would.
* **A program**: a plain fence (what GitHub renders, for ``README.md``) preceded by an HTML
  comment naming it, ``<!-- example: NAME -->``.  It is written to a file and run with
  ``python FILE``, as a reader would run it.  ``<!-- pytest-example: NAME -->`` marks a
  test module, run with ``python -m pytest FILE`` (it must pass, on its own settings).
* **A fragment**: a plain fence preceded by ``<!-- fragment -->``: a few lines that
  show a call, not a program (names such as ``client`` come from the surrounding prose).
  Fragments are not run.
* **Run by another test**: a named ``code-block`` listed in ``RUN_ELSEWHERE``, with the
  test file that runs it (which must mention the name).

Before an example or program runs, the test starts a mock server on ``127.0.0.1`` and
sets ``PARADIGM_BASE_URL`` and ``PARADIGM_API_KEY`` to point at it, so code written for
the real API (``pt.Client()`` with no arguments) talks to the mock.  Code may also start
its own mock with ``mock_server.serve(...)``.  ``MOCK_CONFIGS`` gives an example a mock
with other settings than ``DEFAULT_MOCK``, and ``OUTPUT_CHECKS`` what its output must
show beyond not being empty.  The mock is fast here so that the whole file runs in
seconds.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import mock_server as ms

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = ("README.md", *sorted(f"docs/{page.name}" for page in DOCS.glob("*.md")))
"""Every page with code: the README and the docs."""

BLOCKING_PAGES = ("docs/howto-notebooks.md", "docs/howto-asyncio.md")
"""The pages whose examples are blocking code (see the module docstring)."""

RUN_ELSEWHERE = {
    "recipe-dask": "tests/shared/test_dask_recipe.py",
    "example-reliability-own-property": "tests/property/test_reliability.py",
}
"""Named code blocks run by a test of their own (that needs Redis, or hypothesis)."""

_FENCE = re.compile(
    r"(?:^<!--[ \t]*(?P<mark>[^\n]*?)[ \t]*-->\n)?"  # an HTML comment just before
    r"^```(?P<info>python|\{code-block\}[ \t]+python)[ \t]*\n"  # the opening fence
    r"(?P<body>.*?)"
    r"^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_OPTIONS = re.compile(r"\A((?::[\w-]+:[^\n]*\n)+)\n")
_NAME = re.compile(r"^:name:[ \t]+(\S+)[ \t]*$", re.MULTILINE)
_MARK = re.compile(r"\A(?P<kind>example|pytest-example):[ \t]*(?P<name>\S+)\Z")


@dataclass(frozen=True)
class Block:
    """One Python code block of a page."""

    page: str
    line: int
    kind: str  # "example", "program", "pytest", "fragment", "elsewhere" or "unmarked"
    name: str
    source: str


def blocks_of(page: str) -> list[Block]:
    """Every Python code block of ``page`` (a path from the repository's root)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start("info")) + 1
        body, mark = match.group("body"), match.group("mark")
        kind, name = "unmarked", f"{page}:{line}"
        if match.group("info") != "python":  # a code-block directive
            options = _OPTIONS.match(body)
            if options is not None:
                body = body[options.end() :]
                named = _NAME.search(options.group(1))
                if named is not None:
                    name = named.group(1)
                    kind = "elsewhere" if name in RUN_ELSEWHERE else "unmarked"
                    if name.startswith("example-") and kind != "elsewhere":
                        kind = "example"
        elif mark == "fragment":
            kind = "fragment"
        elif mark is not None and (marked := _MARK.match(mark)) is not None:
            kind = "program" if marked.group("kind") == "example" else "pytest"
            name = marked.group("name")
        found.append(Block(page, line, kind, name, body))
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def _of_kind(kind: str) -> list[Block]:
    return [block for block in ALL_BLOCKS if block.kind == kind]


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
    # Documents processed quickly, for the examples that search what they upload.
    **{
        f"example-howto-paradigm-{name}": ms.MockConfig(
            seed=0, latency=ms.Latency.fixed(0.01), file_processing_time=0.2
        )
        for name in ("retrieve", "ask", "ingest")
    },
    "example-notebooks-files": ms.MockConfig(
        seed=0, latency=ms.Latency.fixed(0.01), file_processing_time=0.2
    ),
}

TIME_LIMIT = 10.0
"""Seconds any one example may take, unless ``TIME_LIMITS`` says otherwise."""

TIME_LIMITS = {
    # Paced by a quota of two requests a second after the first 90 to 120 (16 s when the
    # client learns the quota from the first answers, a busy machine's case).
    "example-howto-rate-limits-adaptive": 40.0,
}

PROGRAM_TIME_LIMIT = 60.0
"""Seconds a program or a pytest example may take, its interpreter's start-up included."""


def _first_line_is_text(out: str) -> None:
    first = out.splitlines()[0]
    assert len(first) >= 40, f"the first line is not the first sentence: {first!r}"


def _adaptive_met_the_quota(out: str) -> None:
    assert "125 of 125 succeeded in " in out, out


OUTPUT_CHECKS: dict[str, Callable[[str], None]] = {
    # The loop prints the deltas it is handed, up to 40 characters: not an empty line.
    "example-howto-streaming-early-exit": _first_line_is_text,
    # The numbers that do not depend on the machine's speed.
    "example-howto-rate-limits-adaptive": _adaptive_met_the_quota,
}


ALL_EXAMPLES = [(block.page, block.name, block.source) for block in _of_kind("example")]


def test_every_python_block_is_run_or_marked() -> None:
    unmarked = [f"{b.page}:{b.line}" for b in ALL_BLOCKS if b.kind == "unmarked"]
    assert not unmarked, (
        "code blocks that are neither run nor marked <!-- fragment --> "
        f"(see this module's docstring): {unmarked}"
    )


def test_the_readme_and_the_docs_have_examples() -> None:
    pages = {block.page for block in ALL_BLOCKS if block.kind in ("example", "program")}
    assert {"README.md", *BLOCKING_PAGES} <= pages
    assert len(pages) >= 10, pages


def test_blocks_run_elsewhere_are_run_there() -> None:
    named = {block.name for block in _of_kind("elsewhere")}
    assert named == set(RUN_ELSEWHERE)
    for name, test in RUN_ELSEWHERE.items():
        assert name in (ROOT / test).read_text(encoding="utf-8"), (name, test)


def test_example_names_are_unique() -> None:
    names = [block.name for block in ALL_BLOCKS if block.kind != "fragment"]
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
    code = compile(source, f"{ROOT / page}:{name}", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {"__name__": f"docs_example_{name.replace('-', '_')}"}
    exec(code, namespace)
    async with ms.serve(MOCK_CONFIGS.get(name, DEFAULT_MOCK), host="127.0.0.1") as server:
        monkeypatch.setenv("PARADIGM_BASE_URL", server.url)
        monkeypatch.setenv("PARADIGM_API_KEY", "docs-example-key")
        with trio.fail_after(TIME_LIMITS.get(name, TIME_LIMIT)):
            if page in BLOCKING_PAGES:
                await trio.to_thread.run_sync(_blocking_main, namespace["main"])
            else:
                await namespace["main"]()
    out = capsys.readouterr().out
    assert out, f"{name} printed nothing"
    OUTPUT_CHECKS.get(name, lambda out: None)(out)


def _blocking_main(main: Any) -> None:
    """Run a blocking page's ``main`` as its script would (see the module docstring)."""
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(main):
        asyncio.run(main())
    else:
        main()


PROGRAMS = _of_kind("program") + _of_kind("pytest")


@pytest.mark.anyio
@pytest.mark.parametrize("block", PROGRAMS, ids=[block.name for block in PROGRAMS])
async def test_program_runs(block: Block, tmp_path: Path) -> None:
    """A program runs as a reader runs it: ``python FILE`` (``python -m pytest FILE``)."""
    path = tmp_path / f"{block.name.replace('-', '_')}.py"
    path.write_text(block.source, encoding="utf-8")
    command = [sys.executable, str(path)]
    if block.kind == "pytest":
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    async with ms.serve(DEFAULT_MOCK, host="127.0.0.1") as server:
        env = {**os.environ, "PARADIGM_BASE_URL": server.url, "PARADIGM_API_KEY": "docs-key"}
        env.pop("CI", None)  # nothing in a reader's program depends on it
        with trio.fail_after(PROGRAM_TIME_LIMIT):
            done = await trio.run_process(
                command, cwd=tmp_path, env=env, capture_stdout=True, capture_stderr=True,
                check=False,
            )  # fmt: skip
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{block.page}:{block.line} {block.name}\n{out}\n{err}"
    assert out, f"{block.name} printed nothing"
    if block.kind == "pytest":
        assert re.search(r"\b[1-9]\d* passed", out), out
        assert "skipped" not in out, out
