"""Benchmarks of paradigm-trio against its peers (not tests): ``python -m benchmarks``.

Scenarios (one module each), every peer against the same local server in the same run:

1. ``speed_test``: the reference page's 20-request speed test, sequential vs concurrent;
2. ``client_cost``: CPU time per request at concurrency 64;
3. ``scaling``: wall time against ``ceil(N/C) * latency`` at concurrency 200 and 2,000;
4. ``memory``: peak RSS growth of a lazy million-request batch;
5. ``rate_limit``: goodput and 429s against a mock quota;
6. ``mock_throughput``: the mock server's own throughput;
13. ``sync_bridge``: ``SyncClient``'s thread bridge against ``Client``, per request.

``python -m benchmarks`` runs them all and writes ``docs/performance.md``;
``--quick`` uses smaller sizes.  Helpers: ``_peers`` (the peer drivers), ``_worker``
(one measurement in a fresh process), ``_rawserver`` (the out-of-process server),
``_profile`` (py-spy summaries), ``_common`` (tables, machine, processes).
"""
