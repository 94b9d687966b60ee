"""Fewer young collections of Python's garbage collector while a batch runs (opt-in).

A request in flight keeps some 32 objects alive (its worker task and coroutines, trio's
socket wait, its records), so at a concurrency in the thousands every collection of the
older generations walks tens of thousands of objects.  Measured on a 2-core AMD EPYC,
CPython 3.11.7 (2026-12-07), 20,000 requests of 1 s at concurrency 2,000 against
``benchmarks._rawserver``: the collector took 0.44 s of the client's 5.11 s of CPU with
the default threshold (700 allocations), and 0.04 s of 4.55 s with a threshold of 10,000
(``python -m benchmarks gc`` measures it).  Even a client with no HTTP library, bare trio
sockets that keep one task per connection, gives the collector 8-24 % of its CPU there.
The collector belongs to the program: the library never changes it by itself, it offers
:func:`fewer_collections` (which the ``paradigm-trio`` command uses for its runs).
The requests' objects are freed by reference counting as they end (no reference cycles),
so the memory held does not grow with the threshold.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["GEN0_THRESHOLD", "fewer_collections"]

GEN0_THRESHOLD = 10_000
"""The young generation's threshold :func:`fewer_collections` sets by default."""


@contextlib.contextmanager
def fewer_collections(threshold: int = GEN0_THRESHOLD) -> Iterator[None]:
    """Raise the garbage collector's young-generation threshold to ``threshold`` inside the
    ``with`` block, and put the old one back at its end.

    For a program that runs batches at a concurrency in the thousands, where the collector
    can take a quarter of the client's CPU (see "Python's garbage collector" in the
    batching how-to)::

        with pt.fewer_collections():
            trio.run(main)

    It is a plain (not async) context manager, so it may also wrap a batch inside a trio
    program.  It changes nothing when the collector is off (``gc.disable()`` or a threshold
    of 0) or its threshold is already at least ``threshold``, and at the end it leaves a
    threshold that something else changed meanwhile as it is.  The setting is the whole
    process's: other threads see it while the block runs.

    Raises:
        ValueError: ``threshold`` is not a positive integer.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
        raise ValueError(f"threshold must be a positive integer, got {threshold!r}")
    before = gc.get_threshold()
    raised = gc.isenabled() and 0 < before[0] < threshold
    if raised:
        gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        if raised and gc.get_threshold()[0] == threshold:
            gc.set_threshold(*before)
