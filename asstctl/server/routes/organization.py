"""Routes: projects and their API keys, in the shapes of OpenAI's Administration API (admin key only;
``asstctl.server.app`` refuses every other caller). The work is in :mod:`asstctl.server.projects`.

    POST/GET /v1/organization/projects                    create (name, external_key_id) / list (limit, after, include_archived)
    GET/POST /v1/organization/projects/{id}               retrieve / update (name, external_key_id)
    POST     /v1/organization/projects/{id}/archive       its keys stop working at once
    POST/GET /v1/organization/projects/{id}/service_accounts    create (answers once with api_key.value) / list
    GET/POST/DELETE /v1/organization/projects/{id}/service_accounts/{account_id}   retrieve / update (name, role) /
                                                          delete (and its keys)
    POST     /v1/organization/projects/{id}/service_accounts/{account_id}/api_keys  another key of the account
                                                          (answers once with its value)
    GET      /v1/organization/projects/{id}/api_keys[/{key_id}] list (owner_project_access) / retrieve
    DELETE   /v1/organization/projects/{id}/api_keys/{key_id}   revoke, at once on every replica
"""

from __future__ import annotations

from starlette.routing import Route

from asstctl.server import projects
from asstctl.server import validation as v
from asstctl.server.app import stored, stored_with_body
from asstctl.server.errors import invalid
from asstctl.server.http import list_envelope, list_params, ok

BASE = "/v1/organization/projects"


def _page(request) -> dict:
    params = list_params(request)
    return {"limit": params["limit"], "after": params["after"]}


@stored_with_body
def create_project(state, request, body):
    v.check_fields(body, ("name", "residency", "external_key_id"), ("name",))
    changes = projects.check_project_body(body)
    name = changes.get("name") or projects.check_name(body, "project")  # (a null name: its error)
    return ok(projects.create_project(state.store, name, changes.get("external_key_id")))


@stored
def list_projects(state, request):
    archived = request.query_params.get("include_archived", "false").lower()
    v.check_enum(archived, "include_archived", ("true", "false"))
    archived = archived == "true"
    items, more = projects.list_projects(state.store, include_archived=archived, **_page(request))
    return ok(list_envelope(items, more))


@stored
def retrieve_project(state, request):
    return ok(projects.require_project(state.store, request.path_params["project_id"]))


@stored_with_body
def modify_project(state, request, body):
    v.check_fields(body, ("name", "external_key_id"))
    changes = projects.check_project_body(body)
    return ok(projects.update_project(state.store, request.path_params["project_id"], changes))


@stored
def archive_project(state, request):
    return ok(projects.archive_project(state.store, request.path_params["project_id"]))


@stored_with_body
def create_service_account(state, request, body):
    v.check_fields(body, ("name", "create_service_account_only"), ("name",))
    only = body.get("create_service_account_only") is True
    account = projects.create_service_account(state.store, request.path_params["project_id"],
                                    projects.check_name(body, "service account"), with_key=not only)
    return ok(account)


@stored_with_body
def modify_service_account(state, request, body):
    v.check_fields(body, ("name", "role"))
    if "role" in body:
        v.check_enum(body["role"], "role", ("member", "owner"))
    name = projects.check_name(body, "service account") if "name" in body else None
    params = request.path_params
    return ok(projects.update_service_account(state.store, params["project_id"], params["account_id"],
                                              name, body.get("role")))


@stored_with_body
def create_account_key(state, request, body):
    v.check_fields(body, ("name", "scopes"))
    if "scopes" in body:
        v.check_array(body["scopes"], "scopes")
        if body["scopes"]:  # every key here has the project's whole access
            raise invalid("scopes", "Invalid 'scopes': this server's keys have no scopes (each sees its whole "
                            "project); omit 'scopes' or send [].", "unsupported_parameter")
    name = projects.check_name(body, "API key") if "name" in body else None
    params = request.path_params
    return ok(projects.create_account_key(state.store, params["project_id"], params["account_id"], name))


@stored
def list_service_accounts(state, request):
    items, more = projects.list_service_accounts(state.store, request.path_params["project_id"], **_page(request))
    return ok(list_envelope(items, more))


@stored
def retrieve_service_account(state, request):
    params = request.path_params
    return ok(projects.require_service_account(state.store, params["project_id"], params["account_id"]))


@stored
def delete_service_account(state, request):
    params = request.path_params
    projects.delete_service_account(state.store, params["project_id"], params["account_id"])
    return ok({"object": "organization.project.service_account.deleted", "id": params["account_id"], "deleted": True})


@stored
def list_keys(state, request):
    access = request.query_params.get("owner_project_access")
    if access is not None:
        v.check_enum(access, "owner_project_access", ("active", "inactive", "any"))
    items, more = projects.list_keys(state.store, request.path_params["project_id"], access=access, **_page(request))
    return ok(list_envelope(items, more))


@stored
def retrieve_key(state, request):
    params = request.path_params
    return ok(projects.shown_key(projects.require_key(state.store, params["project_id"], params["key_id"])))


@stored
def delete_key(state, request):
    params = request.path_params
    projects.require_key(state.store, params["project_id"], params["key_id"])
    projects.revoke_key(state.store, params["project_id"], params["key_id"])
    return ok({"object": "organization.project.api_key.deleted", "id": params["key_id"], "deleted": True})


routes = [
    Route(BASE, create_project, methods=["POST"]),
    Route(BASE, list_projects, methods=["GET"]),
    Route(BASE + "/{project_id}", retrieve_project, methods=["GET"]),
    Route(BASE + "/{project_id}", modify_project, methods=["POST"]),
    Route(BASE + "/{project_id}/archive", archive_project, methods=["POST"]),
    Route(BASE + "/{project_id}/service_accounts", create_service_account, methods=["POST"]),
    Route(BASE + "/{project_id}/service_accounts", list_service_accounts, methods=["GET"]),
    Route(BASE + "/{project_id}/service_accounts/{account_id}", retrieve_service_account, methods=["GET"]),
    Route(BASE + "/{project_id}/service_accounts/{account_id}", modify_service_account, methods=["POST"]),
    Route(BASE + "/{project_id}/service_accounts/{account_id}", delete_service_account, methods=["DELETE"]),
    Route(BASE + "/{project_id}/service_accounts/{account_id}/api_keys", create_account_key, methods=["POST"]),
    Route(BASE + "/{project_id}/api_keys", list_keys, methods=["GET"]),
    Route(BASE + "/{project_id}/api_keys/{key_id}", retrieve_key, methods=["GET"]),
    Route(BASE + "/{project_id}/api_keys/{key_id}", delete_key, methods=["DELETE"]),
]
