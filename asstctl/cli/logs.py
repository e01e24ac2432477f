"""Logging for -v / --debug, with every secret redacted before it is written.

``-v`` shows asstctl's own steps and one line per HTTP request; ``--debug`` adds
the SDK's request details. API keys never reach the output: each record is
formatted, then every known key value and any ``Bearer`` token is masked.
"""

from __future__ import annotations

import logging
import os
import re

BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
KEY_VARIABLES = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "ASSTCTL_SERVER_API_KEY")


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: list[str]):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.secrets = [s for s in secrets if len(s) >= 4]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return BEARER.sub(r"\1***", text)


def known_secrets() -> list[str]:
    names = list(KEY_VARIABLES)
    names += [n for n in os.environ if n.endswith(("_API_KEY", "_TOKEN"))]
    return [os.environ[n] for n in dict.fromkeys(names) if os.environ.get(n)]


def configure(verbose: int, debug: bool) -> None:
    if not verbose and not debug:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(known_secrets()))
    handler.set_name("asstctl-cli")
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO
    for name in ("asstctl", "openai", "httpx2", "httpx"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "asstctl-cli"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
    if not debug:
        logging.getLogger("openai").setLevel(logging.INFO)
