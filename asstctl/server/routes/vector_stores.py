"""Routes: vector_stores (to be written)."""

routes: list = []
