"""DataFrames in and out, and the progress bar of blocking batches (optional extras).

pandas (``paradigm-trio[dataframe]``), numpy and tqdm (``paradigm-trio[progress]``) are
imported by the functions that use them, when they are called: never by
``import paradigm_trio``.

:func:`results_frame` turns a batch's results (chat or embeddings) into a DataFrame, one
row per result, in input order; :func:`embeddings_array` turns embeddings results into
one 2-D array.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence, Sized
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy
    import pandas

__all__ = ["embeddings_array", "results_frame"]

RESULT_COLUMNS = (
    "custom_id", "ok", "text", "error", "error_type", "prompt_tokens", "completion_tokens",
    "total_tokens", "attempts", "latency",
)  # fmt: skip
"""The columns of :func:`results_frame` (an ``embedding`` column replaces ``text`` for
embeddings results)."""


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "DataFrames need pandas: pip install pandas, or from a clone of paradigm-trio: "
            "pip install '.[dataframe]'"
        ) from None
    return pandas


def results_frame(results: Iterable[Any], *, index: Any = None) -> pandas.DataFrame:
    """A batch's results as a pandas DataFrame: one row per result, in input order.

    ``results`` are :class:`BatchResult` s (from ``chat_batch``) or
    :class:`EmbeddingResult` s (from ``embed_batch``), in any order: the rows follow
    their ``index``.  Columns:

    ``custom_id``, ``ok``; ``text`` (the first choice's text) or, for embeddings,
    ``embedding`` (a numpy vector); ``error`` (the error's message), ``error_type`` (its
    class name); ``prompt_tokens``, ``completion_tokens``, ``total_tokens`` (nullable
    integers); ``attempts``; ``latency`` (seconds, the result's ``elapsed``).  What a
    result lacks (the text of a failure, the error of a success, usage the server did not
    report) is missing: test it with ``pandas.isna``.

    Args:
        results: the results.
        index: the frame's index (for example the input frame's), one label per result;
            by default the results' ``index``.

    Needs ``paradigm-trio[dataframe]`` (pandas).
    """
    pd = _pandas()
    rows = sorted(results, key=lambda r: r.index)
    embeddings = any(hasattr(r, "vector") for r in rows)
    data: dict[str, list[Any]] = {name: [] for name in RESULT_COLUMNS}
    if embeddings:
        import numpy as np

        data["embedding"] = data.pop("text")
    for r in rows:
        usage = r.usage
        data["custom_id"].append(r.custom_id)
        data["ok"].append(r.ok)
        if embeddings:
            vector = r.vector
            data["embedding"].append(None if vector is None else np.asarray(vector, dtype=float))
        else:
            data["text"].append(r.completion.text if r.completion is not None else None)
        data["error"].append(None if r.error is None else str(r.error))
        data["error_type"].append(None if r.error is None else type(r.error).__name__)
        data["prompt_tokens"].append(None if usage is None else usage.prompt_tokens)
        data["completion_tokens"].append(
            None if usage is None else getattr(usage, "completion_tokens", None)
        )
        data["total_tokens"].append(None if usage is None else usage.total_tokens)
        data["attempts"].append(r.attempts)
        data["latency"].append(r.elapsed)
    frame: pandas.DataFrame = pd.DataFrame(
        data, index=[r.index for r in rows] if index is None else index
    )
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        frame[name] = frame[name].astype("Int64")
    return frame


def embeddings_array(results: Sequence[Any]) -> numpy.ndarray[Any, Any]:
    """Embeddings results as one 2-D numpy array: row ``i`` is input ``i``'s vector.

    Rows follow the results' ``index``.  A failed item's row is all NaN (its error is in
    the result); when every item failed, the array has no columns.
    """
    import numpy as np

    rows = sorted(results, key=lambda r: r.index)
    vectors = [r.vector for r in rows]
    width = next((len(v) for v in vectors if v is not None), 0)
    array = np.full((len(rows), width), np.nan)
    for i, vector in enumerate(vectors):
        if vector is not None:
            array[i] = vector
    return array


# ---------------------------------------------------------------------- SyncClient's helpers


def column_of(data: Any, column: str) -> tuple[list[Any], Any]:
    """The values of ``data[column]`` (or of a Series) and the index they come with."""
    pd = _pandas()
    if isinstance(data, pd.Series):
        series = data
    elif isinstance(data, pd.DataFrame):
        if column not in data.columns:
            raise KeyError(
                f"the DataFrame has no column {column!r} (its columns: {list(data.columns)}): "
                "name the prompts' column with column=..."
            )
        series = data[column]
    else:
        raise TypeError(f"expected a pandas DataFrame or Series, got {type(data).__name__}")
    return series.tolist(), series.index


def chat_inputs(
    data: Any, column: str, *, system: str | None, id_column: str | None
) -> tuple[list[Any], Any]:
    """The requests of a column of prompts (see :meth:`SyncClient.chat_frame`)."""
    from ._endpoints._models import ChatRequest, make_request

    values, index = column_of(data, column)
    ids = [None] * len(values) if id_column is None else column_of(data, id_column)[0]
    requests: list[Any] = []
    for value, custom_id in zip(values, ids, strict=True):
        if isinstance(value, str):
            messages = [{"role": "user", "content": value}]
            if system is not None:
                messages.insert(0, {"role": "system", "content": system})
            value = messages
        if custom_id is not None and isinstance(value, ChatRequest | list | tuple):
            with contextlib.suppress(ValueError):  # an invalid item: the batch says why
                value = make_request(value, custom_id=str(custom_id))
        requests.append(value)
    return requests, index


def progress_bar(progress: bool, items: object) -> Any:
    """A ``tqdm.auto`` bar for a batch of ``items`` (``None`` when ``progress`` is false)."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install tqdm, or from a clone of paradigm-trio: "
            "pip install '.[progress]'"
        ) from None
    total = len(items) if isinstance(items, Sized) else None
    return tqdm(total=total, unit="req", desc="paradigm-trio")


class Advance:
    """Brings a progress bar to the results finished so far, the failures in its postfix.

    Called every ``WAKE_UP`` while a blocking batch runs: it looks at the results added
    since its last call only (a running count of failures), so a tick costs the new
    results, not the batch's size.
    """

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.seen = 0  # results counted
        self.failed = 0  # failures among them

    def __call__(self, finished: Sequence[Any]) -> None:
        """Count ``finished[seen:]`` (``finished`` only grows) and move the bar."""
        done = len(finished)
        if done > self.seen:
            new = self.failed + sum(1 for r in finished[self.seen : done] if not r.ok)
            if new != self.failed:
                self.failed = new
                self.bar.set_postfix(failed=new, refresh=False)
            self.bar.update(done - self.seen)
            self.seen = done
