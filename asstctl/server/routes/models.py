"""Routes: the models this server can answer for, in the shapes of OpenAI's Models API.

    GET /v1/models            {"object": "list", "data": [Model...]}
    GET /v1/models/{model}    Model (404 model_not_found when not listed)

Which models: with the offline engine (it answers any name) the common OpenAI names
``offline.LISTED_MODELS``; with an upstream, the upstream's own GET /models (bounded, cached briefly:
``UpstreamEngine.upstream_models``) plus the sources of ``--model-map`` patterns (a plain name as it is, a
glob as the offline names it matches). The same list for every project. `asstctl plan` warns of a spec's
``model:`` not listed here, with a did-you-mean.
"""

from __future__ import annotations

import fnmatch
import time

from starlette.routing import Route

from asstctl.server.app import state_of
from asstctl.server.engine.offline import LISTED_MODELS
from asstctl.server.errors import APIError
from asstctl.server.http import ok

OWNER = "asstctl"
GLOB = set("*?[")


async def model_ids(state) -> list[str]:
    engine = state.engine
    listing = getattr(engine, "upstream_models", None)
    if listing is None:
        return list(LISTED_MODELS)
    ids = dict.fromkeys(await listing())
    for pattern, _ in engine.config.model_map:
        if GLOB & set(pattern):
            ids.update(dict.fromkeys(name for name in LISTED_MODELS if fnmatch.fnmatchcase(name, pattern)))
        else:
            ids[pattern] = None
    return list(ids)


def _model(state, model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": state.extra["models.created"], "owned_by": OWNER}


async def list_models(request):
    state = state_of(request)
    return ok({"object": "list", "data": [_model(state, model_id) for model_id in await model_ids(state)]})


async def retrieve_model(request):
    state = state_of(request)
    model_id = request.path_params["model"]
    if model_id not in await model_ids(state):
        raise APIError(404, f"The model `{model_id}` does not exist on this server: GET /v1/models lists the ones "
                       "it has.", param="model", code="model_not_found")
    return ok(_model(state, model_id))


def setup(state) -> None:
    state.extra["models.created"] = int(time.time())


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
]
