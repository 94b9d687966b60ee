"""A quota shared in Redis: the rate limiter that uses it, the store, its Lua script."""

__all__: list[str] = []
