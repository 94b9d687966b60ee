"""The attempt engine: deadlines, slots, rate limits, retries, the ledger, and batches.

It runs any request kind's attempts; what one attempt does is handed to it.
"""

__all__: list[str] = []
