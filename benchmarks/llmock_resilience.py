"""A third party's verdict: llmock's resilience checks on paradigm-trio and the openai SDK.

``python -m benchmarks.llmock_resilience --llmock PATH/TO/llmock``

llmock (PyPI ``llmock``, 0.2.2) is a fault-injecting OpenAI-compatible server that judges
a client from its request journal (``GET /_llmock/verdict``): ignored ``Retry-After``,
retried 4xx, retry storms, a truncated stream accepted, a malformed chunk ignored, no
backoff, giving up without a retry, sitting through a stall.  It is not a dependency of
this project: install it in a virtual environment of its own (it brings FastAPI and
uvicorn) and pass its ``llmock`` command.  For each client, a fresh ``llmock serve`` on
127.0.0.1 gets the same 14 scripted faults, one call each, with the client's defaults;
then its verdict is printed.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx2


def messages(label: str) -> list[dict[str, str]]:
    """One call's messages: a body of its own, so llmock never takes two calls for one."""
    return [{"role": "user", "content": f"Say hello to the lighthouse keeper ({label})"}]


CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": CITY}}]

#: (name, behaviour, how the call is made: "chat", "stream" or "tools")
FAULTS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("429 with Retry-After 1 s", {"type": "fail", "status": 429, "retry_after": 1.0}, "chat"),
    ("503", {"type": "fail", "status": 503}, "chat"),
    ("500 twice", {"type": "fail", "status": 500, "times": 2}, "chat"),
    ("529 (overloaded)", {"type": "fail", "status": 529}, "chat"),
    ("400", {"type": "fail", "status": 400}, "chat"),
    ("401", {"type": "fail", "status": 401}, "chat"),
    ("whole response delayed 2 s", {"type": "delay", "seconds": 2.0}, "chat"),
    ("first token after 2 s", {"type": "slow_first_token", "seconds": 2.0}, "stream"),
    ("stream disconnected after 3 chunks",
     {"type": "stream_fault", "kind": "disconnect", "after_chunks": 3}, "stream"),
    ("stream truncated after 3 chunks",
     {"type": "stream_fault", "kind": "truncate", "after_chunks": 3}, "stream"),
    ("malformed chunk after 3 chunks",
     {"type": "stream_fault", "kind": "malformed", "after_chunks": 3}, "stream"),
    ("stream stalled 3 s after 3 chunks",
     {"type": "stream_fault", "kind": "stall", "after_chunks": 3, "stall_seconds": 3.0},
     "stream"),
    ("tool call with arguments not JSON", {"type": "tool_fault", "kind": "malformed_arguments"},
     "tools"),
    ("tool call of a tool never offered", {"type": "tool_fault", "kind": "unknown_tool"},
     "tools"),
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(llmock: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [llmock, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx2.get(f"{url}/_llmock/requests", timeout=1).raise_for_status()
            return process, url
        except httpx2.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("llmock serve did not start")


def _paradigm_trio(url: str, how: str, label: str) -> str:
    import trio

    import paradigm_trio as pt

    async def call() -> str:
        async with pt.Client(api_key="sk-llmock-resilience", base_url=f"{url}/v1") as client:
            if how == "stream":
                async with client.chat_stream(messages(label)) as stream:
                    text = "".join([chunk.delta async for chunk in stream])
                return f"ok, {len(text)} characters"
            tools = TOOLS if how == "tools" else None
            completion = await client.chat(messages(label), tools=tools)
            return f"ok, {len(completion.text)} characters"

    return trio.run(call)


def _openai(url: str, how: str, label: str) -> str:
    import openai

    client = openai.OpenAI(api_key="sk-llmock-resilience", base_url=f"{url}/v1")
    try:
        if how == "stream":
            stream = client.chat.completions.create(
                model="alfred-4.2",
                messages=messages(label),
                stream=True,  # type: ignore[arg-type]
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return f"ok, {len(text)} characters"
        extra: dict[str, Any] = {"tools": TOOLS} if how == "tools" else {}
        completion = client.chat.completions.create(
            model="alfred-4.2",
            messages=messages(label),
            **extra,  # type: ignore[arg-type]
        )
        return f"ok, {len(completion.choices[0].message.content or '')} characters"
    finally:
        client.close()


CLIENTS: dict[str, Callable[[str, str, str], str]] = {
    "paradigm-trio (defaults)": _paradigm_trio,
    "openai SDK (defaults)": _openai,
}


def judge(llmock: str, name: str, run: Callable[[str, str, str], str]) -> dict[str, Any]:
    process, url = _serve(llmock)
    outcomes = []
    try:
        for label, behaviour, how in FAULTS:
            httpx2.post(
                f"{url}/_llmock/scenario", json={"behaviors": [behaviour]}
            ).raise_for_status()
            try:
                outcome = run(url, how, label)
            except Exception as exc:  # (what the call raised is the outcome)
                outcome = f"raised {type(exc).__name__}"
            httpx2.delete(f"{url}/_llmock/scenario").raise_for_status()
            outcomes.append((label, outcome))
        verdict = httpx2.get(f"{url}/_llmock/verdict", timeout=10).json()
        report = httpx2.get(f"{url}/_llmock/verdict?format=text", timeout=10).text
    finally:
        process.terminate()
        process.wait(10)
    return {"client": name, "outcomes": outcomes, "verdict": verdict, "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llmock_resilience")
    parser.add_argument("--llmock", default="llmock", help="the llmock command (its own venv)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    args = parser.parse_args(argv)
    results = [judge(args.llmock, name, run) for name, run in CLIENTS.items()]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        findings = result["verdict"].get("findings", [])
        errors = sum(f["severity"] == "error" for f in findings)
        warnings = sum(f["severity"] == "warning" for f in findings)
        print(f"\n## {result['client']}: {errors} error(s), {warnings} warning(s)")
        for label, outcome in result["outcomes"]:
            print(f"- {label}: {outcome}")
        print(result["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
