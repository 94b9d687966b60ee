"""The rule for programs the tests need from the system: skip without them, unless CI."""

from __future__ import annotations

import pytest

from .system import need

MISSING = "paradigm-trio-no-such-program"


def test_a_missing_program_skips_with_a_one_line_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        need(MISSING, "some-package", "this test")
    assert str(info.value) == f"this test needs {MISSING} (apt-get install some-package)"


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="required: CI is set"):
        need(MISSING, "some-package", "this test")


def test_a_present_program_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    assert need("sh", "dash", "this test").endswith("/sh")
