"""The command line's parser: ``--version``, suggestions for mistakes, one default
concurrency, help that says only what a subcommand has."""

from __future__ import annotations

import pytest

import paradigm_trio as pt
from paradigm_trio.cli import DEFAULT_CONCURRENCY, build_parser, main
from paradigm_trio.cli._suggest import closest


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out + captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"paradigm-trio {pt.__version__}"


def test_a_mistyped_subcommand_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "bach", "in.jsonl")
    assert code == 2
    assert "invalid choice: 'bach'" in out
    assert "did you mean batch?" in out
    assert len(out.splitlines()) == 2  # the error and where the usage is; not 13 lines


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["batch", "in.jsonl", "-o", "out.jsonl", "--concurency", "8"], "--concurrency"),
        (["batch", "in.jsonl", "-o", "out.jsonl", "--retry-faild"], "--retry-failed"),
        (["speed-test", "--no-reply"], "--no-replies"),
        (["doctor", "--time-out", "3"], "--timeout"),
        (["batch", "in.jsonl", "-o", "out.jsonl", "--base-url=http://x", "--mok"], "--mock"),
    ],
)
def test_a_mistyped_option_gets_a_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str], wanted: str
) -> None:
    code, out = run(capsys, *argv)
    assert code == 2
    assert f"did you mean {wanted}" in out
    assert f"see 'paradigm-trio {argv[0]} --help'" in out


def test_a_mistyped_choice_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "batch", "in.jsonl", "-o", "o.jsonl", "--log-format", "jsno")
    assert code == 2
    assert "did you mean json?" in out


def test_nothing_close_suggests_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "batch", "in.jsonl", "-o", "o.jsonl", "--zzzzzz")
    assert code == 2
    assert "unrecognized arguments: --zzzzzz" in out
    assert "did you mean" not in out
    assert closest("--zzzzzz", ["--mock", "--model"]) == []


def test_one_default_concurrency_for_batch_speed_test_and_the_library() -> None:
    parser = build_parser()
    batch = parser.parse_args(["batch", "in.jsonl", "-o", "out.jsonl"])
    speed = parser.parse_args(["speed-test"])
    assert batch.concurrency == speed.concurrency == DEFAULT_CONCURRENCY
    assert pt.Limits().concurrency == DEFAULT_CONCURRENCY


def test_doctor_help_mentions_no_mock(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "doctor", "--help")
    assert code == 0
    assert "--mock" not in out
    _, batch_help = run(capsys, "batch", "--help")
    assert "not with --mock" in batch_help
