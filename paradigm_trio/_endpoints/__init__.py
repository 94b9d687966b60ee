"""The request kinds: chat completions (plain and streamed) and embeddings.

Their requests (validated, encoded), their answers (parsed) and their batch kinds.
"""

__all__: list[str] = []
