"""Model-graded expectations of ``asstctl test``: the grader (``rubric:``), embeddings (``similar:``)
and the price table (the cost of a test run).

Both reach the upstream of asstctl.yaml's ``engine:`` (its URL, key variable, ``model_map``, Azure
settings), through the openai SDK: the grader is ``test.grader.model`` on ``/chat/completions``, the
embeddings are ``engine.embeddings.model`` on ``/embeddings``. :func:`check_configured` tells, before
any conversation runs, which key of asstctl.yaml is missing (a ConfigError, exit 2).

Prices (``test.prices``) are per **1M tokens**, as model price lists give them:
``{gpt-4o: {prompt: 2.50, completion: 10.00}}``; keys are model names or fnmatch patterns.

The grader follows the upstream's dialect: with a named ``engine.dialect`` whose profile takes no
``json_schema`` (llama.cpp, DeepSeek, ...) it starts at ``json_object`` with the schema stated; without
one it learns from the first refusal. Its errors go through the engine's scrub (``engine.limits``):
the key and any echoed ``Authorization`` / ``api-key`` header are removed before the message is cut.

Imports asstctl.errors and, of asstctl.server.engine, ``config``, ``dialects`` and ``limits`` (settings
and pure text functions, no server code).
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from asstctl.errors import ConfigError

PER_TOKENS = 1_000_000  # prices are per 1M tokens
RETRIES = 3  # further attempts of a grader or embeddings call after a 429, 5xx or connection failure
GRADER_SYSTEM = (
    "You grade the reply of an AI assistant against one criterion. Judge only the criterion, not style or "
    "length. Answer with a JSON object and nothing else: "
    '{"pass": true or false, "reason": "<one sentence: why the reply meets or misses the criterion>"}'
)
VERDICT_SCHEMA = {
    "name": "verdict",
    "strict": True,
    "schema": {"type": "object", "additionalProperties": False, "required": ["pass", "reason"],
               "properties": {"pass": {"type": "boolean"}, "reason": {"type": "string"}}},
}
HINT = "The model-graded expectations are described in docs/conversations.md (rubric, similar)."
# How the verdict's shape is asked for, strictest first; a server that refuses one gets the next (and
# the schema stated in the instructions): json_schema; json_object with the schema (llama-cpp-python
# turns it into a grammar); plain json_object; nothing.
FORMATS: list[dict[str, Any]] = [
    {"response_format": {"type": "json_schema", "json_schema": VERDICT_SCHEMA}},
    {"extra_body": {"response_format": {"type": "json_object", "schema": VERDICT_SCHEMA["schema"]}}},
    {"response_format": {"type": "json_object"}},
    {},
]


class GradingError(Exception):
    """The grader or the embeddings model gave no usable answer (the message never holds a key)."""


@dataclass
class Verdict:
    passed: bool
    reason: str


@dataclass
class Spend:
    """Tokens spent per model (thread-safe adds)."""

    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, model: str, prompt: int, completion: int = 0) -> None:
        with self._lock:
            entry = self.by_model.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
            entry["prompt_tokens"] += int(prompt or 0)
            entry["completion_tokens"] += int(completion or 0)

    def merge(self, other: "Spend") -> None:
        for model, usage in other.by_model.items():
            self.add(model, usage["prompt_tokens"], usage["completion_tokens"])


# -- configuration ---------------------------------------------------------------------------
def needs(conversations) -> tuple[bool, bool]:
    """(a grader is needed, embeddings are needed) by these conversations' expectations."""
    expects = [turn.expect for c in conversations for turn in c.turns]
    return any("rubric" in e for e in expects), any("similar" in e for e in expects)


def grader_model(project) -> str | None:
    return ((project.raw.get("test") or {}).get("grader") or {}).get("model")


def embeddings_model(project) -> str | None:
    return ((project.raw.get("engine") or {}).get("embeddings") or {}).get("model")


def check_configured(project, conversations) -> "Grader | None":
    """The grader these conversations need (None: no model-graded expectation), or a ConfigError naming
    the asstctl.yaml key to set. Nothing is sent to the upstream here."""
    from asstctl.server.engine.config import resolve_key

    rubric, similar = needs(conversations)
    if not (rubric or similar):
        return None
    used = " and ".join(k for k, used in (("`rubric:`", rubric), ("`similar:`", similar)) if used)
    missing = [key for key, absent in (("test.grader.model", rubric and not grader_model(project)),
                                       ("engine.embeddings.model", similar and not embeddings_model(project)))
               if absent]
    if project.engine is None:
        missing.insert(0, "engine.upstream")
    if missing:
        raise ConfigError(
            f"{project.root / 'asstctl.yaml'}: conversations use {used}, so set {' and '.join(missing)} in asstctl.yaml",
            hint="e.g. engine: {upstream: https://api.openai.com/v1, embeddings: {model: text-embedding-3-small}} and "
                 "test: {grader: {model: gpt-4o-mini}}. " + HINT,
        )
    resolve_key(project.engine)  # a missing key is a configuration error too, before any run
    return Grader(project.engine, grader_model(project), embeddings_model(project))


# -- calls -----------------------------------------------------------------------------------
class Grader:
    """The grader and embeddings model, reached through the engine's upstream (thread-safe)."""

    def __init__(self, upstream, grader: str | None, embeddings: str | None, timeout: float = 120.0):
        self.upstream = upstream
        self.grader = grader
        self.embeddings = embeddings
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()
        self._vectors: dict[str, list[float]] = {}
        self._format_level = first_format(getattr(upstream, "dialect", None))  # index in FORMATS (learned on refusals)

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = _client(self.upstream, self.timeout)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def judge(self, criterion: str, question: str, reply: str, spend: Spend) -> Verdict:
        """The grader's verdict on ``reply`` (to ``question``) against ``criterion``."""
        import openai

        model = self._model(self.grader)
        prompt = (f"<question>\n{question}\n</question>\n<reply>\n{reply}\n</reply>\n"
                  f"<criterion>\n{criterion}\n</criterion>\nDoes the reply meet the criterion?")
        while True:
            level = self._format_level
            try:
                answer = self._create(model=model, temperature=0, messages=grader_messages(prompt, level),
                                      **FORMATS[level])
            except openai.APIStatusError as error:
                if level + 1 < len(FORMATS) and _format_refused(error):  # e.g. llama.cpp: no json_schema
                    with self._lock:
                        self._format_level = max(self._format_level, level + 1)
                    continue
                raise GradingError(f"the grader {self.grader} on {self.upstream.host} failed: "
                                   f"{_problem(error, self.upstream)}") from None
            except openai.OpenAIError as error:
                raise GradingError(f"the grader {self.grader} on {self.upstream.host} failed: "
                                   f"{_problem(error, self.upstream)}") from None
            break
        if answer.usage:
            spend.add(self.grader, answer.usage.prompt_tokens, answer.usage.completion_tokens)
        content = answer.choices[0].message.content if answer.choices else None
        if level > 0:  # the server did not enforce the schema: the answer is checked against it
            return checked_verdict(content or "")
        return parse_verdict(content or "")

    def _create(self, **request):
        """One grader call. Sent first without the SDK's retries, so a refusal of the response format
        (llama-cpp-python's 500 on json_schema) is seen at once and the next format tried, not sent
        RETRIES more times; any other 429, 5xx or connection failure is then sent again with them."""
        import openai

        client = self.client()
        try:
            return client.with_options(max_retries=0).chat.completions.create(**request)
        except openai.APIStatusError as error:
            if _format_refused(error) or not (error.status_code == 429 or error.status_code >= 500):
                raise
        except openai.APIConnectionError:  # a timeout too
            pass
        return client.with_options(max_retries=RETRIES - 1).chat.completions.create(**request)

    def similarity(self, reply: str, text: str, spend: Spend) -> float:
        """Cosine similarity of the embeddings of ``reply`` and ``text``."""
        a, b = self.embed([reply, text], spend)
        return cosine(a, b)

    def embed(self, texts: list[str], spend: Spend) -> list[list[float]]:
        import openai

        wanted = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if wanted:
            try:
                answer = self.client().embeddings.create(model=self._model(self.embeddings), input=wanted,
                                                         encoding_format="float")
            except openai.OpenAIError as error:
                raise GradingError(f"the embeddings model {self.embeddings} on {self.upstream.host} failed: "
                                   f"{_problem(error, self.upstream)}") from None
            vectors = [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]
            if len(vectors) != len(wanted):
                raise GradingError(f"the embeddings model {self.embeddings} returned {len(vectors)} vectors "
                                   f"for {len(wanted)} texts")
            if answer.usage:
                spend.add(self.embeddings, answer.usage.prompt_tokens)
            with self._lock:
                self._vectors.update(zip(wanted, vectors))
        return [self._vectors[t] for t in texts]

    def _model(self, name: str | None) -> str:
        model = self.upstream.upstream_model(name or "")
        return self.upstream.deployment(model) if self.upstream.is_azure else model


def _client(upstream, timeout: float):
    import openai

    from asstctl.server.engine.config import resolve_key

    key = resolve_key(upstream)
    if upstream.is_azure:
        return openai.AzureOpenAI(azure_endpoint=upstream.url, api_version=upstream.azure_api_version, api_key=key,
                                  timeout=timeout, max_retries=RETRIES)
    return openai.OpenAI(base_url=upstream.url, api_key=key, timeout=timeout, max_retries=RETRIES)


def first_format(dialect: str | None) -> int:
    """Where in FORMATS the grader starts: a named profile without json_schema starts at json_object
    (with the schema), one without json_object too at no response_format; otherwise json_schema."""
    from asstctl.server.engine.dialects import profile

    found = profile(dialect) if dialect else None
    if found is None or found.json_schema:
        return 0
    return 1 if found.json_object else len(FORMATS) - 1


def _problem(error: Exception, upstream) -> str:
    """The SDK's error, the key (and any echoed auth header, of whatever key) scrubbed *before* it is cut."""
    from asstctl.server.engine.config import LOOPBACK_PLACEHOLDER, resolve_key
    from asstctl.server.engine.limits import detail_text

    status = getattr(error, "status_code", None)
    key = resolve_key(upstream)  # (resolved once already: the client has it)
    key = None if key == LOOPBACK_PLACEHOLDER else key
    message = re.sub(r"(sk-|api[_-]?key[:= ]+)[^\s'\",}]+", r"\1***", str(getattr(error, "message", None) or error),
                     flags=re.I)  # any key's shape
    message = detail_text(message, key)  # (our key and any echoed auth header scrubbed, then cut)
    return f"{type(error).__name__}{f' ({status})' if status else ''}: {message}"


def grader_messages(prompt: str, level: int) -> list[dict[str, str]]:
    system = GRADER_SYSTEM
    if level > 0:
        system += "\nThe JSON object must match this JSON Schema: " + json.dumps(VERDICT_SCHEMA["schema"])
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def _format_refused(error: Exception) -> bool:
    """The server refused the response format (a 400/422, or a 500 that is a validation error naming it)."""
    status = getattr(error, "status_code", 0) or 0
    text = str(getattr(error, "message", "") or error).lower()
    named = any(word in text for word in ("response_format", "json_schema", "json_object", "schema"))
    return named and (status in (400, 422) or (status >= 500 and ("validation" in text or "input should" in text)))


# -- parsing ---------------------------------------------------------------------------------
def checked_verdict(content: str) -> Verdict:
    """The verdict of an answer the server did not hold to the schema: validated against it."""
    from jsonschema import Draft202012Validator

    data = _json_object(content.strip())
    if data is None:
        return parse_verdict(content)  # PASS/FAIL words, or a GradingError
    problems = [e.message for e in Draft202012Validator(VERDICT_SCHEMA["schema"]).iter_errors(data)]
    if problems:
        raise GradingError(f"the grader's answer does not match the verdict schema ({problems[0][:120]}): "
                           f"{json.dumps(' '.join(content.split())[:200])}")
    return Verdict(data["pass"], data["reason"].strip())



_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_WORD = re.compile(r"^\W*(pass|passed|yes|true|fail|failed|no|false)\b[\s:.,\-—]*(.*)$", re.I | re.S)


def parse_verdict(content: str) -> Verdict:
    """A verdict from the grader's answer: the JSON object asked for (in a code fence or with text
    around it too); else an answer that starts with PASS or FAIL. Anything else is a GradingError."""
    text = content.strip()
    data = _json_object(text)
    if data is not None:
        passed = _truth(data.get("pass", data.get("passed", data.get("verdict"))))
        if passed is not None:
            return Verdict(passed, str(data.get("reason") or data.get("explanation") or "").strip())
    word = _WORD.match(text) if data is None else None
    if word:
        return Verdict(word.group(1).lower() in ("pass", "passed", "yes", "true"), word.group(2).strip())
    raise GradingError(f"the grader's answer is not a verdict: {json.dumps(' '.join(text.split())[:200])}")


def _json_object(text: str) -> dict[str, Any] | None:
    match = _OBJECT.search(text)
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("pass", "passed", "true", "yes", "fail", "failed",
                                                           "false", "no"):
        return value.strip().lower() in ("pass", "passed", "true", "yes")
    return None


def cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b) or not a:
        raise GradingError(f"embeddings of different sizes ({len(a)} and {len(b)})")
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


# -- prices ----------------------------------------------------------------------------------
def price_table(project) -> dict[str, dict[str, float]]:
    return dict(((project.raw.get("test") or {}).get("prices") or {}))


def price_of(prices: dict[str, dict[str, float]], model: str) -> dict[str, float] | None:
    """The prices of ``model``: its own entry, else the first fnmatch pattern that matches it."""
    if model in prices:
        return prices[model]
    return next((p for pattern, p in prices.items() if fnmatch.fnmatchcase(model, pattern)), None)


def cost(prices: dict[str, dict[str, float]], by_model: dict[str, dict[str, int]]) -> tuple[float | None, list[str]]:
    """(cost, models without a price); the cost is None when no model has a price or ``prices`` is empty."""
    if not prices:
        return None, []
    total, unpriced, priced = 0.0, [], False
    for model, usage in sorted(by_model.items()):
        price = price_of(prices, model)
        if price is None:
            unpriced.append(model)
            continue
        priced = True
        total += (usage.get("prompt_tokens", 0) * price.get("prompt", 0.0)
                  + usage.get("completion_tokens", 0) * price.get("completion", 0.0)) / PER_TOKENS
    return (total if priced or not by_model else None), unpriced
