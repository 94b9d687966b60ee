"""One HTTP send path over the transport, and the failures an attempt can end in."""

__all__: list[str] = []
