"""Config validation, deterministic draws, content and quota arithmetic (no sockets)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

import mock_server as ms
from mock_server._cli import build_parser, config_from_args
from mock_server._content import RequestError, count_prompt_tokens, make_reply, parse_chat_request
from mock_server._determinism import unit
from mock_server._quota import TokenBucket, format_duration


def test_public_api_is_sorted_and_complete() -> None:
    assert ms.__all__ == sorted(ms.__all__)
    public = {name for name in dir(ms) if not name.startswith("_")}
    assert public - set(ms.__all__) == {"annotations"}  # the __future__ import
    for name in ms.__all__:
        obj = getattr(ms, name)
        if isinstance(obj, type):
            assert obj.__module__ == "mock_server", name


def test_mock_server_never_imports_the_client() -> None:
    import ast
    import pathlib

    root = pathlib.Path(ms.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("paradigm_trio") for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("paradigm_trio"), path


def test_defaults() -> None:
    cfg = ms.MockConfig()
    assert cfg.seed == 0
    assert cfg.latency == ms.Latency.fixed(0.0)
    assert cfg.faults.total == 0.0
    assert cfg.api_key is None
    assert cfg.models is None
    assert cfg.max_body_bytes == 1 << 20
    assert cfg.reply_tokens == (10, 60)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"seed": "1"}, "seed"),
        ({"token_delay": -0.1}, "token_delay"),
        ({"load_latency": float("nan")}, "load_latency"),
        ({"retry_after": -1}, "retry_after"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": 1.5}, "tpm"),
        ({"api_key": ""}, "api_key"),
        ({"models": ()}, "models"),
        ({"models": "a,b"}, "models"),
        ({"reply_tokens": (5, 2)}, "reply_tokens"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"latency": 0.1}, "latency"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        ms.MockConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_rates_validation() -> None:
    with pytest.raises(ValueError, match=r"^faults\.hang"):
        ms.FaultRates(hang=1.5)
    with pytest.raises(ValueError, match=r"^faults\.reset"):
        ms.FaultRates(reset=-0.1)
    with pytest.raises(ValueError, match="sum"):
        ms.FaultRates(rate_limit=0.6, server_error=0.5)
    assert ms.FaultRates(rate_limit=0.5, server_error=0.5).total == 1.0


def test_latency_validation_and_parsing() -> None:
    assert ms.Latency.parse("fixed:0.1") == ms.Latency.fixed(0.1)
    assert ms.Latency.parse("0.25") == ms.Latency.fixed(0.25)
    assert ms.Latency.parse("uniform:0.05,0.2") == ms.Latency.uniform(0.05, 0.2)
    assert ms.Latency.parse("lognormal:0.5,0.3") == ms.Latency.lognormal(0.5, 0.3)
    assert ms.Latency.parse("lognormal:0.5,0.3,2") == ms.Latency.lognormal(0.5, 0.3, cap=2.0)
    for bad in ("uniform:1", "gamma:1,2", "fixed:x", "fixed:-1"):
        with pytest.raises(ValueError, match="latency"):
            ms.Latency.parse(bad)
    with pytest.raises(ValueError, match=r"^latency\.high"):
        ms.Latency.uniform(0.3, 0.1)
    with pytest.raises(ValueError, match=r"^latency\.kind"):
        ms.Latency(kind="normal")  # type: ignore[arg-type]


def test_latency_samples() -> None:
    assert ms.Latency.fixed(0.2).sample(0.7) == 0.2
    uniform = ms.Latency.uniform(0.1, 0.3)
    assert uniform.sample(0.0) == pytest.approx(0.1)
    assert uniform.sample(0.5) == pytest.approx(0.2)
    lognormal = ms.Latency.lognormal(0.5, 0.3)
    assert lognormal.sample(0.5) == pytest.approx(0.5)
    draws = [lognormal.sample(unit(0, "k", i)) for i in range(4000)]
    assert statistics.median(draws) == pytest.approx(0.5, rel=0.05)
    logs = [math.log(d) for d in draws]
    assert statistics.stdev(logs) == pytest.approx(0.3, rel=0.08)
    assert max(ms.Latency.lognormal(0.5, 2.0, cap=1.0).sample(u / 100) for u in range(100)) == 1.0


def test_fault_rates_pick_matches_probabilities() -> None:
    rates = ms.FaultRates(rate_limit=0.1, server_error=0.2, hang=0.05)
    n = 20_000
    counts: dict[str | None, int] = {}
    for i in range(n):
        kind = rates.pick(unit(7, f"key-{i}", 1, "fault"))
        counts[kind] = counts.get(kind, 0) + 1
    for kind, p in [("rate_limit", 0.1), ("server_error", 0.2), ("hang", 0.05), (None, 0.65)]:
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts[kind] - n * p) < 4.5 * sd, (kind, counts)


def test_draws_are_deterministic_and_seed_dependent() -> None:
    assert unit(1, "a", 1) == unit(1, "a", 1)
    assert unit(1, "a", 1) != unit(2, "a", 1)
    assert unit(1, "a", 1) != unit(1, "a", 2)
    assert 0.0 <= unit(3, "x") < 1.0


def test_from_mapping_coerces_file_values() -> None:
    cfg = ms.MockConfig.from_mapping(
        {
            "seed": 3,
            "latency": "uniform:0.01,0.02",
            "ttft": 0.5,
            "faults": {"hang": 0.1},
            "models": ["a", "b"],
            "rpm": 60,
            "reply_tokens": [3, 4],
        }
    )
    assert cfg.latency == ms.Latency.uniform(0.01, 0.02)
    assert cfg.ttft == ms.Latency.fixed(0.5)
    assert cfg.faults == ms.FaultRates(hang=0.1)
    assert cfg.models == ("a", "b")
    assert cfg.reply_tokens == (3, 4)
    with pytest.raises(ValueError, match=r"^colour: unknown"):
        ms.MockConfig.from_mapping({"colour": "blue"})
    with pytest.raises(ValueError, match="unknown fault kind"):
        ms.MockConfig.from_mapping({"faults": {"explode": 0.1}})
    assert ms.MockConfig().replace(models="x, y").models == ("x", "y")


def test_repr_masks_the_api_key() -> None:
    cfg = ms.MockConfig(api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(cfg)
    assert "sk-secret-123" not in str(cfg.to_dict())
    assert "api_key='***'" in repr(cfg)


def test_fault_and_script_entries() -> None:
    assert ms.Fault("503").kind == "503"
    assert ms.Fault("200").kind == "ok"
    assert ms.Fault("HANG").kind == "hang"
    for bad in ("boom", "99", "302", "600"):
        with pytest.raises(ValueError, match=r"^kind"):
            ms.Fault(bad)
    with pytest.raises(ValueError, match=r"^retry_after"):
        ms.Fault("429", retry_after=-1)
    state = ms.MockState()
    state.script("k", ["503", 429, ms.Fault("ok", latency=0.1), {"kind": "rate_limit"}])
    assert [state.pop_script("k") for _ in range(5)] == [
        ms.Fault("503"),
        ms.Fault("429"),
        ms.Fault("ok", latency=0.1),
        ms.Fault("rate_limit"),
        None,
    ]
    with pytest.raises(ValueError, match="outcomes"):
        state.script("k", "503")
    with pytest.raises(ValueError, match=r"^kind"):
        state.script("k", ["nope"])


def test_format_duration() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(0.0001) == "1ms"
    assert format_duration(1) == "1s"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(360) == "6m0s"
    assert format_duration(90.25) == "1m30.25s"
    assert format_duration(3725) == "1h2m5s"


def test_token_bucket_refills_continuously() -> None:
    bucket = TokenBucket(60, now=0.0)  # 1 unit per second
    assert bucket.wait_time(60, 0.0) == 0.0
    bucket.take(60, 0.0)
    assert bucket.remaining(0.0) == 0
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_time(1, 0.25) == pytest.approx(0.75)
    assert bucket.remaining(10.0) == 10
    assert bucket.reset_after(10.0) == pytest.approx(50.0)
    assert bucket.wait_time(61, 10.0) is None
    assert bucket.remaining(1000.0) == 60


def _request(content: object, **extra: object) -> bytes:
    import json

    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    ).encode()


def test_prompt_token_approximation() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "abcd" * 5},  # 20 chars -> 5 tokens
        {"role": "user", "content": [{"type": "text", "text": "abcde"}]},  # 5 chars -> 2
    ]
    assert count_prompt_tokens(messages) == 3 + (4 + 5) + (4 + 2)


def test_reply_is_deterministic_and_truncated_by_max_tokens() -> None:
    request = parse_chat_request(_request("Tell me about trio nurseries"), models=None)
    first = make_reply(0, request, (10, 60))
    assert first == make_reply(0, request, (10, 60))
    assert first.finish_reason == "stop"
    assert 10 <= first.completion_tokens <= 60
    assert first.content.startswith('You said: "Tell me about trio nurseries".')
    assert any(make_reply(s, request, (10, 60)) != first for s in range(1, 6))
    short = make_reply(
        0,
        parse_chat_request(_request("Tell me about trio nurseries", max_tokens=4), models=None),
        (10, 60),
    )
    assert short.completion_tokens == 4
    assert short.finish_reason == "length"
    assert first.content.startswith(short.content)


def test_parse_errors_name_the_parameter() -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(_request(12), models=None)
    assert info.value.param == "messages[0].content"
    with pytest.raises(RequestError) as info:
        parse_chat_request(_request("x"), models=("other",))
    assert info.value.code == "model_not_found"


def test_parse_checks_include_usage_and_prefers_max_completion_tokens() -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(
            _request("x", stream=True, stream_options={"include_usage": "yes"}), models=None
        )
    assert (info.value.param, info.value.code, info.value.status) == (
        "stream_options.include_usage",
        "invalid_type",
        400,
    )
    assert info.value.message == (
        "Invalid type for 'stream_options.include_usage': expected a boolean, but got string."
    )
    both = parse_chat_request(_request("x", max_completion_tokens=2, max_tokens=5), models=None)
    assert both.max_tokens == 2
    with pytest.raises(RequestError) as info:  # the legacy one is checked all the same
        parse_chat_request(_request("x", max_completion_tokens=2, max_tokens=0), models=None)
    assert (info.value.param, info.value.code) == ("max_tokens", "integer_below_min_value")


def test_stream_stall_kind_and_its_chunk_count() -> None:
    # appended (before issue 16's two and issue 28's three): earlier kinds draw as before
    assert ms.FAULT_KINDS[-6:-3] == ("stream_stall", "invalid_output", "tool_call_malformed")
    assert ms.FAULT_KINDS[-3:] == ("tool_call_not_json", "tool_call_invalid", "tool_call_unknown")
    assert "stream_stall" in ms.STREAM_FAULT_KINDS
    assert ms.FaultRates(stream_stall=0.25).items()["stream_stall"] == 0.25
    assert ms.MockConfig().stall_after is None
    assert ms.MockConfig(stall_after=0).stall_after == 0
    assert ms.MockConfig.from_mapping({"stall_after": 4}).to_dict()["stall_after"] == 4
    with pytest.raises(ValueError, match=r"^stall_after"):
        ms.MockConfig(stall_after=-1)
    with pytest.raises(ValueError, match=r"^stall_after"):
        ms.MockConfig(stall_after=1.5)  # type: ignore[arg-type]
    assert ms.Fault("stream_stall", stall_after=2).stall_after == 2
    assert ms.Fault("stream_stall").stall_after is None
    with pytest.raises(ValueError, match=r"^stall_after: .*stream_stall"):
        ms.Fault("503", stall_after=2)
    with pytest.raises(ValueError, match=r"^stall_after"):
        ms.Fault("stream_stall", stall_after=-2)
    state = ms.MockState()
    state.script("k", [{"kind": "stream_stall", "stall_after": 3}])
    assert state.pop_script("k") == ms.Fault("stream_stall", stall_after=3)


def test_cli_flags_for_the_stall_fault() -> None:
    args = build_parser().parse_args(["--fault", "stream_stall=0.5", "--stall-after", "3"])
    config = config_from_args(args)
    assert config.faults.stream_stall == 0.5
    assert config.stall_after == 3
    assert config_from_args(build_parser().parse_args([])).stall_after is None


def test_stragglers_parse_validate_and_draw() -> None:
    assert ms.Stragglers.parse("0.02:10x") == ms.Stragglers(share=0.02, factor=10.0)
    assert ms.Stragglers.parse(" 0.5:3 ") == ms.Stragglers(share=0.5, factor=3.0)
    assert ms.Stragglers.parse("0.1") == ms.Stragglers(share=0.1)
    assert str(ms.Stragglers(share=0.02, factor=10.0)) == "0.02:10x"
    for bad, field in (("x:10x", "stragglers"), ("1.5:10x", r"stragglers\.share"),
                       ("0.1:0.5x", r"stragglers\.factor"), ("0.1:ax", "stragglers")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{field}"):
            ms.Stragglers.parse(bad)
    stragglers = ms.Stragglers(share=0.25, factor=4.0)
    assert stragglers.multiplier(0.249) == 4.0
    assert stragglers.multiplier(0.25) == 1.0
    assert ms.Stragglers().multiplier(0.0) == 1.0  # share 0: nothing straggles


def test_stragglers_from_a_file_a_fault_table_and_the_command_line() -> None:
    expected = ms.Stragglers(share=0.02, factor=10.0)
    assert ms.MockConfig.from_mapping({"stragglers": "0.02:10x"}).stragglers == expected
    assert ms.MockConfig.from_mapping({"stragglers": {"share": 0.02}}).stragglers == expected
    from_faults = ms.MockConfig.from_mapping({"faults": {"straggler": "0.02:10x", "hang": 0.1}})
    assert (from_faults.stragglers, from_faults.faults.hang) == (expected, 0.1)
    assert from_faults.to_dict()["stragglers"] == "0.02:10x"
    with pytest.raises(ValueError, match=r"^stragglers: given twice"):
        ms.MockConfig.from_mapping({"stragglers": 0.1, "faults": {"straggler": 0.1}})
    with pytest.raises(ValueError, match=r"^stragglers"):
        ms.MockConfig.from_mapping({"stragglers": [1]})
    args = build_parser().parse_args(
        ["--fault", "straggler=0.02:10x", "--fault", "server_error=0.1"]
    )
    config = config_from_args(args)
    assert (config.stragglers, config.faults.server_error) == (expected, 0.1)
    with pytest.raises(ValueError, match="straggler=SHARE:FACTORx"):
        config_from_args(build_parser().parse_args(["--fault", "stragglers=0.1"]))
    assert ms.Fault("straggler").kind == "straggler"
