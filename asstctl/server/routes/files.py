"""Routes: files (to be written)."""

routes: list = []
