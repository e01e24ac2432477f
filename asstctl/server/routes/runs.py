"""Routes: runs (to be written)."""

routes: list = []
