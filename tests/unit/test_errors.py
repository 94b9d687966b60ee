"""The exception tree, constructors, ``str``/``repr`` and the status -> class map."""

from __future__ import annotations

import pytest

import paradigm_trio as pt
from paradigm_trio._errors import status_error_class


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (pt.ConfigurationError, pt.ParadigmError),
        (pt.ConfigurationError, ValueError),
        (pt.APIError, pt.ParadigmError),
        (pt.APIStatusError, pt.APIError),
        (pt.BadRequestError, pt.APIStatusError),
        (pt.AuthenticationError, pt.APIStatusError),
        (pt.PermissionDeniedError, pt.APIStatusError),
        (pt.NotFoundError, pt.APIStatusError),
        (pt.ConflictError, pt.APIStatusError),
        (pt.UnprocessableEntityError, pt.APIStatusError),
        (pt.RateLimitError, pt.APIStatusError),
        (pt.InternalServerError, pt.APIStatusError),
        (pt.APIConnectionError, pt.APIError),
        (pt.APITimeoutError, pt.APIConnectionError),
        (pt.APIResponseValidationError, pt.APIError),
        (pt.ParadigmError, Exception),
    ],
)
def test_hierarchy(child: type, parent: type) -> None:
    assert issubclass(child, parent)


def test_branches_are_disjoint() -> None:
    assert not issubclass(pt.APIStatusError, pt.APIConnectionError)
    assert not issubclass(pt.APIResponseValidationError, pt.APIStatusError)
    assert not issubclass(pt.APIConnectionError, pt.APIStatusError)
    assert not issubclass(pt.APIError, ValueError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, pt.BadRequestError),
        (401, pt.AuthenticationError),
        (403, pt.PermissionDeniedError),
        (404, pt.NotFoundError),
        (409, pt.ConflictError),
        (422, pt.UnprocessableEntityError),
        (429, pt.RateLimitError),
        (500, pt.InternalServerError),
        (502, pt.InternalServerError),
        (503, pt.InternalServerError),
        (504, pt.InternalServerError),
        (599, pt.InternalServerError),
        (408, pt.APIStatusError),
        (418, pt.APIStatusError),
        (451, pt.APIStatusError),
        (302, pt.APIStatusError),
    ],
)
def test_status_error_class(status: int, cls: type) -> None:
    assert status_error_class(status) is cls


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (pt.BadRequestError, 400),
        (pt.AuthenticationError, 401),
        (pt.PermissionDeniedError, 403),
        (pt.NotFoundError, 404),
        (pt.ConflictError, 409),
        (pt.UnprocessableEntityError, 422),
        (pt.RateLimitError, 429),
    ],
)
def test_named_classes_carry_their_status(cls: type[pt.APIStatusError], status: int) -> None:
    assert cls.status_code == status


def test_api_error_context_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        pt.APIError("boom", 500)  # type: ignore[misc]
    err = pt.APIError("boom", status_code=500, request_id="req-1", body={"a": 1}, custom_id="c")
    assert err.message == "boom"
    assert err.status_code == 500
    assert err.request_id == "req-1"
    assert err.body == {"a": 1}
    assert err.attempts == ()
    assert err.custom_id == "c"


def test_status_code_defaults_to_none_without_a_response() -> None:
    assert pt.APIConnectionError("reset").status_code is None
    assert pt.APITimeoutError("slow", which="read").status_code is None


def test_status_error_fields() -> None:
    err = pt.RateLimitError(
        "Error code: 429 - slow down",
        status_code=429,
        headers={"retry-after": "2"},
        code="rate_limit_exceeded",
        type="requests",
        param=None,
    )
    assert err.status_code == 429
    assert err.headers == {"retry-after": "2"}
    assert (err.code, err.type, err.param) == ("rate_limit_exceeded", "requests", None)


def test_str_mentions_request_id_and_attempts() -> None:
    attempts = (
        pt.Attempt(1, 0.0, 0.1, 503, "503", "x", 0.5),
        pt.Attempt(2, 0.6, 0.1, 503, "503", "x", None),
    )
    err = pt.InternalServerError(
        "Error code: 503 - busy", status_code=503, request_id="req-9", attempts=attempts
    )
    assert str(err) == "Error code: 503 - busy (request id req-9) after 2 attempts"
    assert repr(err) == (
        "InternalServerError('Error code: 503 - busy', status_code=503, "
        "request_id='req-9', attempts=2)"
    )


def test_str_of_a_bare_error_is_its_message() -> None:
    assert str(pt.APIError("plain")) == "plain"
    assert repr(pt.APIError("plain")) == "APIError('plain')"


def test_timeout_error_which() -> None:
    err = pt.APITimeoutError("too slow", which="attempt", request_id="r")
    assert err.which == "attempt"
    assert err.request_id == "r"
    with pytest.raises(TypeError):
        pt.APITimeoutError("too slow")  # type: ignore[call-arg]


def test_validation_error_raw() -> None:
    err = pt.APIResponseValidationError("bad", raw="{not json", status_code=200)
    assert err.raw == "{not json"
    assert err.status_code == 200
    assert pt.APIResponseValidationError("bad").raw == ""
