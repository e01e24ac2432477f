"""Routes: messages (to be written)."""

routes: list = []
