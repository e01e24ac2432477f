"""asstctl: assistants as code for the OpenAI Assistants API v2, with its own compatible server."""

__version__ = "0.1.0"
