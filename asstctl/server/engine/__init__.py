"""Run engines: what produces an assistant's reply for a run.

``build_engine(config)`` returns the offline engine (``offline.py``), steered by the rules file
``config.rules_path`` or, when that is unset, the environment variable ``ASSTCTL_ENGINE_RULES``.
Other engines implement ``base.Engine`` and are passed as ``ServerConfig.engine``.
"""

from __future__ import annotations

import os

from asstctl.server.engine.base import Engine, EngineError, EngineReply, EngineRequest, ToolCall, Usage

RULES_ENV = "ASSTCTL_ENGINE_RULES"

__all__ = ["Engine", "EngineError", "EngineReply", "EngineRequest", "ToolCall", "Usage", "build_engine", "RULES_ENV"]


def build_engine(config) -> Engine:
    """The offline engine; an invalid rules file raises ``RulesError`` (an AsstctlError) naming file and rule."""
    from asstctl.server.engine.offline import OfflineEngine

    return OfflineEngine(config.rules_path or os.environ.get(RULES_ENV) or None)
