"""Routes: assistants (to be written)."""

routes: list = []
