"""The endpoints, each a module of one protocol (``_endpoint.Endpoint``): chat completions
(plain and streamed, with restart), embeddings, and Paradigm's own (tokenize, query,
filter, document search, threads turns, legacy completions, files).

Their requests (validated, encoded), their answers (parsed), their usage, and their batch
kinds; ``_endpoint.Sender`` runs any of them through the engine.
"""

__all__: list[str] = []
