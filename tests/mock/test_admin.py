"""Admin endpoints (/_mock/*, /metrics) and the same controls from Python."""

from __future__ import annotations

import httpx2
import pytest

import mock_server as ms

from ._helpers import assert_error_envelope, chat_body, keyed

pytestmark = pytest.mark.anyio


async def test_stats_and_requests_endpoints_match_the_python_view() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        server.script("k", ["503"])
        await client.post("/api/v2/chat/completions", json=chat_body(), headers=keyed("k"))
        await client.post("/api/v2/chat/completions", json=chat_body(stream=True))
        await client.post("/v1/chat/completions", content=b"[]")
        stats = (await client.get("/_mock/stats")).json()
        log = (await client.get("/_mock/requests")).json()
        python_stats = server.stats()
        python_log = server.requests()
    assert stats == python_stats.to_dict()
    assert stats["total"] == 3
    assert stats["by_outcome"] == {"503": 1, "ok": 1, "400": 1}
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] >= 1
    assert log["data"] == [r.to_dict() for r in python_log]
    first = log["data"][0]
    assert first["key"] == "k"
    assert first["attempt"] == 1
    assert first["status"] == 503
    assert first["arrival"] <= first["finish"]
    assert log["data"][1]["stream"] is True
    assert log["data"][2]["path"] == "/v1/chat/completions"


async def test_config_endpoint_changes_behaviour_live() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        before = (await client.get("/_mock/config")).json()
        changed = await client.post(
            "/_mock/config",
            json={"faults": {"server_error": 1.0}, "latency": "fixed:0", "models": ["m1"]},
        )
        failing = await client.post("/api/v2/chat/completions", json=chat_body(model="m1"))
        wrong_model = await client.post("/api/v2/chat/completions", json=chat_body(model="m2"))
        invalid = await client.post("/_mock/config", json={"faults": {"hang": 2}})
        unknown = await client.post("/_mock/config", json={"colour": "red"})
        not_object = await client.post("/_mock/config", json=[1])
        garbage = await client.post(
            "/_mock/config", content=b"{", headers={"Content-Type": "application/json"}
        )
    assert before["faults"]["server_error"] == 0.0
    assert changed.status_code == 200
    assert changed.json()["faults"]["server_error"] == 1.0
    assert server.config.faults.server_error == 1.0
    assert server.config.models == ("m1",)
    assert failing.status_code in (500, 502, 503, 504)
    assert wrong_model.status_code == 400
    assert "faults.hang" in assert_error_envelope(invalid, 400)["message"]
    assert "colour" in assert_error_envelope(unknown, 400)["message"]
    assert_error_envelope(not_object, 400)
    assert_error_envelope(garbage, 400, "invalid_json")
    assert server.config.faults.server_error == 1.0  # invalid updates changed nothing


async def test_reset_endpoint_clears_everything() -> None:
    async with (
        ms.serve(ms.MockConfig(rpm=1)) as server,
        httpx2.AsyncClient(base_url=server.root_url) as client,
    ):
        server.script("k", ["503", "503"])
        await client.post("/api/v2/chat/completions", json=chat_body(), headers=keyed("k"))
        await client.post("/api/v2/chat/completions", json=chat_body("a"))
        await client.post("/api/v2/chat/completions", json=chat_body("b"))
        assert server.stats().by_outcome == {"503": 1, "ok": 1, "quota": 1}
        reset = await client.post("/_mock/reset")
        assert reset.status_code == 200
        assert server.stats().total == 0
        assert server.requests() == []
        again = await client.post("/api/v2/chat/completions", json=chat_body(), headers=keyed("k"))
    assert again.status_code == 200  # script cleared, quota refilled
    assert [(r.key, r.attempt) for r in server.requests()] == [("k", 1)]  # attempts cleared


async def test_script_endpoint() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        queued = await client.post(
            "/_mock/script",
            json={
                "key": "job-1",
                "outcomes": ["429", 503, {"kind": "rate_limit", "retry_after": 0.5}, "ok"],
            },
        )
        statuses = []
        for _ in range(4):
            r = await client.post(
                "/api/v2/chat/completions", json=chat_body(), headers=keyed("job-1")
            )
            statuses.append((r.status_code, r.headers.get("retry-after-ms")))
        bad_kind = await client.post("/_mock/script", json={"key": "x", "outcomes": ["boom"]})
        no_key = await client.post("/_mock/script", json={"outcomes": ["503"]})
        no_list = await client.post("/_mock/script", json={"key": "x", "outcomes": "503"})
    assert queued.json() == {"key": "job-1", "queued": 4}
    assert statuses == [(429, "1000"), (503, None), (429, "500"), (200, None)]
    assert "kind" in assert_error_envelope(bad_kind, 400)["message"]
    assert_error_envelope(no_key, 400)
    assert_error_envelope(no_list, 400)


async def test_metrics_in_prometheus_text_format() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        server.script("k", ["503"])
        await client.post("/api/v2/chat/completions", json=chat_body(), headers=keyed("k"))
        await client.post("/api/v2/chat/completions", json=chat_body())
        await client.post("/api/v2/chat/completions", json=chat_body())
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert "mock_requests_total 3" in lines
    assert 'mock_responses_total{outcome="ok"} 2' in lines
    assert 'mock_responses_total{outcome="503"} 1' in lines
    assert "mock_requests_in_flight 0" in lines
    assert "mock_requests_max_in_flight 1" in lines
    assert "mock_client_disconnects_total 0" in lines
    for line in lines:
        assert line.startswith("#") or line.split()[-1].isdigit(), line


async def test_admin_routes_are_not_counted() -> None:
    async with ms.serve() as server, httpx2.AsyncClient(base_url=server.root_url) as client:
        for path in ("/_mock/stats", "/_mock/requests", "/_mock/config", "/metrics"):
            assert (await client.get(path)).status_code == 200
        await client.get("/api/v2/models")
    assert server.stats().total == 0
    assert server.requests() == []


async def test_python_controls() -> None:
    config = ms.MockConfig(seed=1)
    async with ms.serve(config) as server:
        assert server.config is config
        assert server.url == server.root_url + "/api/v2"
        assert server.url.startswith("http://127.0.0.1:")
        new = server.configure(ms.MockConfig(seed=2), rpm=5)
        assert new == server.config
        assert new.seed == 2
        assert new.rpm == 5
        assert server.configure(seed=3).seed == 3
        assert server.config.rpm == 5
        with pytest.raises(ValueError, match=r"^rpm"):
            server.configure(rpm=-1)
        assert ms.get_state(server.app) is server.state
        assert isinstance(server.stats(), ms.MockStats)
        with pytest.raises(AttributeError):
            server.stats().total = 5  # type: ignore[misc]
