"""``asstctl serve keys ...``: projects and their API keys, straight in the server's database (the same
work as the admin key's /v1/organization/projects routes; replicas see a change on their next request)."""

from __future__ import annotations

from contextlib import contextmanager

import click

DB_OPTION = click.option("--db", metavar="PATH|URL", envvar="ASSTCTL_DB", show_envvar=True,
                         help="The server's database (as `asstctl serve --db`). "
                              "[default: .asstctl/server.sqlite3 under the project root]")


@click.group()
def keys() -> None:
    """Projects and their API keys (each key sees only its project's objects).

    \b
    Example:
        asstctl serve keys new-project billing          # prints the project id
        asstctl serve keys create proj_... --name web   # prints the key, once
        asstctl serve keys show key_...                 # id, name, project, created, last used
        asstctl serve keys project proj_...             # id, name, status, created, archived
        asstctl serve keys revoke key_...
        asstctl serve keys delete-account proj_... svc_acct_...   # the account and its keys
    """


@contextmanager
def _store(db):
    from asstctl.server.embedded import default_db
    from asstctl.server.projects import ensure_default
    from asstctl.server.store import open_store

    store = open_store(db or str(default_db()))
    try:
        ensure_default(store)
        yield store
    finally:
        store.close()


def _api(call, *args, **kwargs):
    """A projects call; its API error becomes a usage error (its message names the problem)."""
    from asstctl.server.errors import APIError

    try:
        return call(*args, **kwargs)
    except APIError as error:
        raise click.ClickException(error.message) from None


def _every(listing, *args, **kwargs):
    """Every item of a paged projects listing, page after page."""
    after = None
    while True:
        items, more = _api(listing, *args, limit=100, after=after, **kwargs)
        yield from items
        if not more or not items:
            return
        after = items[-1]["id"]


@keys.command("projects")
@click.option("--all", "include_archived", is_flag=True, help="Include archived projects.")
@DB_OPTION
def list_projects(include_archived, db) -> None:
    """List the projects: id, status, name."""
    from asstctl.server.projects import list_projects as listed

    with _store(db) as store:
        for project in _every(listed, store, include_archived=include_archived):
            click.echo(f"{project['id']}\t{project['status']}\t{project['name']}")


@keys.command("project")
@click.argument("project_id")
@DB_OPTION
def show_project(project_id, db) -> None:
    """Show one project: id, name, status, created, archived (UTC)."""
    from asstctl.server.projects import require_project

    with _store(db) as store:
        project = _api(require_project, store, project_id)
    _fields(("id", project["id"]), ("name", project["name"]), ("status", project["status"]),
            ("created", _when(project.get("created_at"))), ("archived", _when(project.get("archived_at"))))


def _when(seconds) -> str:
    from datetime import datetime, timezone

    if not isinstance(seconds, (int, float)):
        return "never"
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(*pairs) -> None:
    click.echo("\n".join(f"{name}\t{value}" for name, value in pairs))


@keys.command("new-project")
@click.argument("name")
@DB_OPTION
def new_project(name, db) -> None:
    """Create a project named NAME; prints its id."""
    from asstctl.server.projects import check_name, create_project

    with _store(db) as store:
        click.echo(_api(create_project, store, _api(check_name, {"name": name}, "project"))["id"])


@keys.command("archive")
@click.argument("project_id")
@DB_OPTION
def archive(project_id, db) -> None:
    """Archive a project: its keys stop working at once."""
    from asstctl.server.projects import archive_project

    with _store(db) as store:
        _api(archive_project, store, project_id)
    click.echo(f"archived {project_id}", err=True)


@keys.command("rename")
@click.argument("project_id")
@click.argument("name")
@DB_OPTION
def rename(project_id, name, db) -> None:
    """Rename a project."""
    from asstctl.server.projects import check_name, rename_project

    with _store(db) as store:
        _api(rename_project, store, project_id, _api(check_name, {"name": name}, "project"))
    click.echo(f"renamed {project_id}", err=True)


@keys.command("create")
@click.argument("project_id")
@click.option("--name", default="asstctl serve keys", show_default=True, help="The key's (service account's) name.")
@DB_OPTION
def create(project_id, name, db) -> None:
    """Make an API key for PROJECT_ID; the key is printed once, on stdout (only its hash is stored)."""
    from asstctl.server.projects import check_name, create_service_account

    with _store(db) as store:
        account = _api(create_service_account, store, project_id, _api(check_name, {"name": name}, "key"))
    click.echo(f"created {account['api_key']['id']} (service account {account['id']}) in {project_id}; keep the key "
               "now, it is not shown again", err=True)
    click.echo(account["api_key"]["value"])


@keys.command("list")
@click.argument("project_id")
@DB_OPTION
def list_keys(project_id, db) -> None:
    """List a project's keys: id, active or inactive, name (never a key)."""
    from asstctl.server.projects import list_keys as listed

    with _store(db) as store:
        for key in _every(listed, store, project_id):
            click.echo(f"{key['id']}\t{key['owner_project_access']}\t{key['name']}")


@keys.command("show")
@click.argument("key_id")
@DB_OPTION
def show(key_id, db) -> None:
    """Show one key (never the key itself): id, name, project, active or inactive, created, last used (UTC)."""
    from asstctl.server.store.scope import scoped

    with _store(db) as store, scoped(None):
        record = store.get("api_key", key_id, None)
    if record is None:
        raise _no_key(key_id)
    _fields(("id", record["id"]), ("name", record["name"]), ("project", record["project_id"]),
            ("access", record["owner_project_access"]), ("created", _when(record.get("created_at"))),
            ("last_used", _when(record.get("last_used_at"))))


def _no_key(key_id: str) -> click.ClickException:
    return click.ClickException(f"no API key with id {key_id} (`asstctl serve keys list PROJECT_ID` lists a "
                                "project's keys)")


@keys.command("revoke")
@click.argument("key_id")
@DB_OPTION
def revoke(key_id, db) -> None:
    """Delete a key: requests with it fail at once, on every replica."""
    from asstctl.server.projects import revoke_key

    with _store(db) as store:
        if not revoke_key(store, None, key_id):
            raise _no_key(key_id)
    click.echo(f"revoked {key_id}", err=True)


@keys.command("accounts")
@click.argument("project_id")
@DB_OPTION
def accounts(project_id, db) -> None:
    """List a project's service accounts: id, name (each `create` made one, with its key)."""
    from asstctl.server.projects import list_service_accounts as listed

    with _store(db) as store:
        for account in _every(listed, store, project_id):
            click.echo(f"{account['id']}\t{account['name']}")


@keys.command("delete-account")
@click.argument("project_id")
@click.argument("account_id")
@DB_OPTION
def delete_account(project_id, account_id, db) -> None:
    """Delete a service account and its keys: requests with them fail at once, on every replica."""
    from asstctl.server.projects import delete_service_account

    with _store(db) as store:
        _api(delete_service_account, store, project_id, account_id)
    click.echo(f"deleted {account_id} and its keys", err=True)
