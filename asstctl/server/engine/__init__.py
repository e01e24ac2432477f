"""Run engines: what produces an assistant's reply for a run.

``build_engine(config)`` returns the upstream engine (``upstream.py``: each turn on an
OpenAI-compatible Chat Completions API; ``responses.py`` when its ``api`` is ``responses``: each
turn on the Responses API) when ``config.upstream`` holds an ``UpstreamConfig``
(``config.py``: from ``asstctl serve --upstream`` or the ``engine:`` section of asstctl.yaml);
otherwise the offline engine (``offline.py``), steered by the rules file ``config.rules_path`` or,
when that is unset, the environment variable ``ASSTCTL_ENGINE_RULES``. Other engines implement
``base.Engine`` / ``base.StreamingEngine`` and are passed as ``ServerConfig.engine``.

This package imports ``asstctl.errors`` and, in ``http.py`` (the upstream engine's HTTP/1.1
client), h11; never the server's HTTP layer, the store or the executor.
"""

from __future__ import annotations

import os

from asstctl.server.engine.base import Engine, EngineError, EngineReply, EngineRequest, ToolCall, Usage

RULES_ENV = "ASSTCTL_ENGINE_RULES"

__all__ = ["Engine", "EngineError", "EngineReply", "EngineRequest", "ToolCall", "Usage", "build_engine", "RULES_ENV"]


def build_engine(config) -> Engine:
    """The upstream engine when ``config.upstream`` is set (a remote upstream without its key raises
    ``ConfigError``); else the offline engine (an invalid rules file raises ``RulesError`` naming file and rule)."""
    upstream = getattr(config, "upstream", None)
    if upstream is not None and getattr(upstream, "api", "chat") == "responses":
        from asstctl.server.engine.responses import ResponsesEngine

        return ResponsesEngine(upstream)
    if upstream is not None:
        from asstctl.server.engine.upstream import UpstreamEngine

        return UpstreamEngine(upstream)
    from asstctl.server.engine.offline import OfflineEngine

    return OfflineEngine(config.rules_path or os.environ.get(RULES_ENV) or None)
