"""The client: :class:`~paradigm_trio.Client`, its public methods, and telemetry."""

__all__: list[str] = []
