"""Dense embeddings through an upstream's OpenAI-compatible ``POST /embeddings``.

:class:`EmbeddingsConfig` says where (``base_url``), with which key (read from the environment
variable ``api_key_env`` at call time, never stored or logged) and which ``model``. The server
uses it when ``ServerConfig.embeddings`` is set; without it retrieval is lexical only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


class EmbeddingsError(Exception):
    """The upstream did not return embeddings (the message names the upstream, never the key)."""


@dataclass
class EmbeddingsConfig:
    model: str  # e.g. "text-embedding-3-small"
    base_url: str  # the upstream's API root, e.g. "http://127.0.0.1:8001/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the upstream's key
    dimensions: int | None = None  # ask for shorter vectors (models that support it)
    batch_size: int = 64  # inputs per request
    timeout: float = 60.0
    azure_api_version: str | None = None  # set: Azure OpenAI (base_url is the resource endpoint, key in api-key)
    azure_deployment: str | None = None  # Azure: the deployment serving ``model`` (default: the model's name)

    @property
    def request_model(self) -> str:
        """The name sent upstream: on Azure the deployment (it goes in the path), else the model."""
        return (self.azure_deployment or self.model) if self.azure_api_version else self.model


class Embedder:
    def __init__(self, config: EmbeddingsConfig):
        import openai

        self.config = config
        key = os.environ.get(config.api_key_env) or "no-key"
        if config.azure_api_version:  # POST {endpoint}/openai/deployments/{deployment}/embeddings?api-version=...
            self._client = openai.AzureOpenAI(azure_endpoint=config.base_url, api_version=config.azure_api_version,
                                              api_key=key, timeout=config.timeout, max_retries=2)
        else:
            self._client = openai.OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout, max_retries=2)

    @property
    def model(self) -> str:
        return self.config.model

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        import openai

        out: list[list[float]] = []
        size = max(1, self.config.batch_size)
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            extra = {"dimensions": self.config.dimensions} if self.config.dimensions else {}
            try:  # the raw JSON: building SDK objects for thousands of floats costs more than the request
                raw = self._client.embeddings.with_raw_response.create(
                    model=self.config.request_model, input=batch, encoding_format="float", **extra)
                items = sorted(json.loads(raw.http_response.text)["data"], key=lambda item: item["index"])
                vectors = [[float(x) for x in item["embedding"]] for item in items]
            except openai.OpenAIError as exc:
                raise EmbeddingsError(
                    f"The embeddings upstream {self.config.base_url} failed for model {self.config.model!r}: "
                    f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
                ) from None
            except (ValueError, KeyError, TypeError) as exc:
                raise EmbeddingsError(f"The embeddings upstream {self.config.base_url} sent an answer that is not "
                                      f"a CreateEmbeddingResponse ({type(exc).__name__}: {exc}).") from None
            if len(vectors) != len(batch):
                raise EmbeddingsError(
                    f"The embeddings upstream {self.config.base_url} returned {len(vectors)} vectors for {len(batch)} inputs."
                )
            out.extend(vectors)
        return out
