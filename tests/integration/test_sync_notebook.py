"""``SyncClient`` in a real Jupyter kernel (ipykernel, whose asyncio loop runs on the main
thread): a notebook's cells run through nbclient against the mock server (a process on
127.0.0.1), and a kernel interrupt stops a batch of 2,000."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from .mockprocess import mock_process, mock_stats

pytestmark = pytest.mark.slow

KEY = "sk-test-not-a-real-key"


def setup_cell(url: str, concurrency: int) -> str:
    return (
        "import json, sys, threading\n"
        "import paradigm_trio as pt\n"
        f"client = pt.SyncClient(api_key={KEY!r}, base_url={url!r},\n"
        f"    limits=pt.Limits(concurrency={concurrency}),\n"
        "    retry=pt.RetryPolicy(attempts=10, initial_delay=0.01, max_delay=0.1))\n"
        "print(json.dumps({'threads': threading.active_count()}))\n"
    )


def stream_text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def last_json(text: str) -> Any:
    return json.loads(text.strip().splitlines()[-1])


def test_a_notebook_uses_sync_client_against_the_mock() -> None:
    with mock_process(
        "--seed", "7", "--latency", "fixed:0.01", "--retry-after", "0.05",
        "--fault", "server_error=0.1", "--fault", "rate_limit=0.05", "--fault", "reset=0.02",
    ) as url:  # fmt: skip
        nb = nbformat.v4.new_notebook()
        cells = [
            setup_cell(url, 16),
            "c = client.chat([{'role': 'user', 'content': 'Bonjour'}])\n"
            "print(json.dumps({'text': c.text, 'tokens': c.usage.total_tokens}))\n",
            "prompts = [[{'role': 'user', 'content': f'item {i}'}] for i in range(200)]\n"
            "results = client.chat_batch(prompts, progress=True)\n"
            "s = results.statistics\n"
            "print(json.dumps({'n': len(results), 'ok': sum(r.ok for r in results),\n"
            "    'order': [r.index for r in results] == list(range(200)),\n"
            "    'retries': s.retries, 'texts': all('item' in r.completion.text\n"
            "                                       for r in results if r.ok)}))\n",
            "import numpy as np\n"
            "emb = client.embed_batch([f'text {i}' for i in range(30)], dimensions=64)\n"
            "array = pt.embeddings_array(emb)\n"
            "print(json.dumps({'shape': list(array.shape), 'ok': all(r.ok for r in emb),\n"
            "    'finite': bool(np.isfinite(array).all())}))\n",
            "import pandas as pd\n"
            "df = pd.DataFrame({'prompt': [f'row {i}' for i in range(40)]},\n"
            "                  index=[f'r{i}' for i in range(40)])\n"
            "out = df.join(client.chat_frame(df, column='prompt', temperature=0))\n"
            "vectors = client.embed_frame(df, column='prompt')\n"
            "print(json.dumps({'index': list(out.index) == list(df.index),\n"
            "    'ok': int(out['ok'].sum()), 'cols': sorted(out.columns),\n"
            "    'match': all(f'row {i}' in t for i, t in enumerate(out['text'])),\n"
            "    'attempts': int(out['attempts'].min()),\n"
            "    'dims': int(vectors['embedding'].iloc[0].shape[0])}))\n",
            "client.close()\n"
            "print(json.dumps({'closed': client.closed,\n"
            "    'loops': [t.name for t in threading.enumerate() if 'paradigm' in t.name]}))\n",
        ]
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
        outputs = [stream_text(cell) for cell in nb.cells]
        widget = [
            o for o in nb.cells[2].outputs
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]  # fmt: skip
        stats = mock_stats(url)

    chat = last_json(outputs[1])
    assert "Bonjour" in chat["text"]
    assert chat["tokens"] > 0
    batch = last_json(outputs[2])
    assert batch == {"n": 200, "ok": 200, "order": True, "retries": batch["retries"],
                     "texts": True}  # fmt: skip
    assert batch["retries"] > 0  # the faults happened, and were retried
    assert widget, "progress=True in a notebook shows a widget"
    assert last_json(outputs[3]) == {"shape": [30, 64], "ok": True, "finite": True}
    frame = last_json(outputs[4])
    assert frame["index"] is True
    assert frame["ok"] == 40
    assert frame["match"] is True
    assert frame["attempts"] >= 1
    assert frame["dims"] > 0
    assert {"text", "ok", "error", "attempts", "latency", "custom_id"} <= set(frame["cols"])
    assert last_json(outputs[5]) == {"closed": True, "loops": []}
    assert stats["in_flight"] == 0


# ---------------------------------------------------------------------------- interrupts


class Kernel:
    """A kernel run through jupyter_client, cell by cell, with interrupts."""

    def __init__(self) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def start(self, code: str) -> str:
        """Send a cell; its msg_id.

        ``stop_on_error=False``: after a cell that fails (an interrupted one), ipykernel
        aborts the execute requests it reads until a message it queues *after* sending the
        failed cell's reply; a cell sent as soon as that reply is read can get there first
        and is answered ``aborted``, never run (seen on a loaded machine).  The cells here
        are sent one at a time, each after the reply of the one before.
        """
        msg_id: str = self.client.execute(code, stop_on_error=False)
        return msg_id

    def output_until(self, msg_id: str, predicate: Any, timeout: float = 120) -> str:
        """Read the cell's output until ``predicate(text so far)`` holds.

        Fails, naming the cell's messages (and its reply if it has ended), if the cell
        ends first (the kernel is idle again for it) or ``timeout`` passes.
        """
        text = ""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while not predicate(text):
            try:
                message = self.client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                raise AssertionError(
                    f"no such output in {timeout} s: {text!r}; the cell's messages: {seen}; "
                    f"kernel alive: {self.manager.is_alive()}"
                ) from None
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            content = message["content"]
            seen.append(f"{message['msg_type']} {_brief(content)}")
            if message["msg_type"] == "stream":
                text += content["text"]
            elif message["msg_type"] == "status" and content["execution_state"] == "idle":
                raise AssertionError(
                    f"the cell ended before its output: {text!r}; its reply: "
                    f"{_brief(self.reply(msg_id))}; its messages: {seen}"
                )
        return text

    def reply(self, msg_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if message["parent_header"].get("msg_id") == msg_id:
                content: dict[str, Any] = message["content"]
                return content

    def run(self, code: str) -> Any:
        """Run a cell to its end; the JSON of its last line of output."""
        msg_id = self.start(code)
        text = self.output_until(msg_id, lambda t: t.endswith("\n") and "{" in t)
        reply = self.reply(msg_id)
        assert reply["status"] == "ok", reply
        return last_json(text)

    def interrupt(self, msg_id: str) -> tuple[float, dict[str, Any]]:
        """Interrupt the running cell; the seconds until its reply, and the reply."""
        started = time.monotonic()
        self.manager.interrupt_kernel()
        reply = self.reply(msg_id)
        return time.monotonic() - started, reply


def _brief(content: dict[str, Any]) -> str:
    """A message's content for a failure's text (an error's traceback cut to its end)."""
    brief = {k: v for k, v in content.items() if k != "traceback"}
    if "traceback" in content:
        brief["traceback_end"] = content["traceback"][-3:]
    return repr(brief)[:2000]


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.close()


COUNT = (
    "import os, psutil\n"
    "def connections(port):\n"
    "    return sum(1 for c in psutil.Process(os.getpid()).net_connections('tcp')\n"
    "               if c.raddr and c.raddr.port == port and c.status == 'ESTABLISHED')\n"
)


def test_a_kernel_interrupt_stops_a_batch_and_keeps_its_results(kernel: Kernel) -> None:
    with mock_process("--latency", "fixed:0.5") as url:
        port = int(url.split(":")[2].split("/")[0])
        before = kernel.run(setup_cell(url, 16) + COUNT)["threads"]

        # The kernel's own interrupt latency on this machine, now: a cell blocked in a
        # plain wait.  The batch's bound is derived from it (a loaded machine slows both).
        msg_id = kernel.start("print('waiting', flush=True)\nthreading.Event().wait(600)\n")
        kernel.output_until(msg_id, lambda t: "waiting" in t)
        baseline, reply = kernel.interrupt(msg_id)
        assert reply["ename"] == "KeyboardInterrupt"

        msg_id = kernel.start(
            "print('started', flush=True)\n"
            "results = client.chat_batch([[{'role': 'user', 'content': f'n{i}'}]\n"
            "                             for i in range(2000)])\n"
        )
        kernel.output_until(msg_id, lambda t: "started" in t)
        deadline = time.monotonic() + 60
        while mock_stats(url)["total"] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)  # until some results have finished (16 at a time, 0.5 s each)
        stopped, reply = kernel.interrupt(msg_id)
        assert reply["status"] == "error"
        assert reply["ename"] == "BatchInterrupted"
        # ipykernel's interrupt, then the batch's cancellation on the client's loop (the
        # requests under way are abandoned at once, not waited for).
        print(f"interrupt: the batch stopped in {stopped:.3f} s (a plain wait: {baseline:.3f} s)")
        assert stopped < 1.0 + 3 * baseline, (stopped, baseline)

        after = kernel.run(
            "exc = sys.last_value\n"
            "kept = exc.results\n"
            "print(json.dumps({'kept': len(kept), 'ok': all(r.ok for r in kept),\n"
            "    'order': [r.index for r in kept] == sorted(r.index for r in kept),\n"
            "    'threads': threading.active_count(),\n"
            f"    'in_flight': client.statistics().in_flight, 'conns': connections({port})}}))\n"
        )
        assert after["kept"] >= 16
        assert after["ok"] is True
        assert after["order"] is True
        assert after["in_flight"] == 0
        assert after["threads"] == before  # the client's loop, and nothing more
        assert after["conns"] <= 16  # at most the idle pool: no request left on any
        deadline = time.monotonic() + 10
        while mock_stats(url)["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the mock notices the closed connections
        assert mock_stats(url)["in_flight"] == 0

        again = kernel.run(
            "results = client.chat_batch([[{'role': 'user', 'content': f'm{i}'}]\n"
            "                             for i in range(32)])\n"
            "print(json.dumps({'n': len(results), 'ok': sum(r.ok for r in results)}))\n"
        )
        assert again == {"n": 32, "ok": 32}

        closed = kernel.run(
            "client.close()\n"
            "print(json.dumps({'threads': threading.active_count(),\n"
            f"    'conns': connections({port})}}))\n"
        )
        assert closed == {"threads": before - 1, "conns": 0}  # the loop's thread ended
