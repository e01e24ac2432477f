"""HTTP routes of the local server, one module per API resource (``lookup`` holds the thread lookups
the thread, message and run routes share).

May import the server's HTTP layer (asstctl.server.app, http, errors, validation), its store, executor,
tools and retrieval; route modules import each other only downwards (threads → messages → lookup).
"""
