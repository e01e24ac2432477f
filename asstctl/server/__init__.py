"""asstctl's own Assistants API v2 server: HTTP layer (``app``), SQLite ``store``, run ``engine``."""
