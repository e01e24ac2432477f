"""Routes: threads (to be written)."""

routes: list = []
