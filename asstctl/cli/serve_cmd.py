"""``asstctl serve``: run asstctl's Assistants API v2 server in the foreground."""

from __future__ import annotations

import os

import click

KEY_ENV = "ASSTCTL_SERVER_API_KEY"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Anything but loopback needs an API key.")
@click.option("--port", default=8321, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free port).")
@click.option("--db", metavar="PATH|URL", envvar="ASSTCTL_DB", show_envvar=True,
              help="SQLite database file, ':memory:' for a throwaway server, or a "
                   "postgresql://user:password@host/db URL: replicas on one PostgreSQL database "
                   "share every object and run (needs `pip install 'asstctl[postgres]'`). "
                   "[default: .asstctl/server.sqlite3 under the project root]")
@click.option("--api-key", metavar="KEY", envvar=KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request. Prefer the environment "
                   "variable: a key on the command line shows in `ps`.")
@click.option("--rules", metavar="PATH", type=click.Path(exists=True, dir_okay=False),
              help="Offline engine steering rules (YAML). [default: the project's engine_rules]")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0, metavar="N",
              help="Delay every request by N milliseconds.")
@click.option("--faults", "fault_spec", metavar="RATE[:KINDS]",
              help="Fail a fraction of /v1 requests, e.g. 0.2 or 0.1:429,500,503,drop,lost.")
@click.option("--fault-seed", type=int, metavar="N", help="Seed the fault picker (reproducible runs).")
def serve(host, port, db, api_key, rules, latency_ms, fault_spec, fault_seed) -> None:
    """Serve the Assistants API v2 on /v1 for any OpenAI SDK (Ctrl-C stops it).

    Data persists in SQLite, or in PostgreSQL for several replicas behind
    a load balancer (see docs/deploy.md). Without an API key only loopback
    is allowed.
    Fault kinds: 429, 500, 503, drop (connection closed), lost (a write is
    committed but its response never arrives).

    \b
    Example:
        export ASSTCTL_SERVER_API_KEY=$(openssl rand -hex 16)
        asstctl serve --port 8321
        OPENAI_BASE_URL=http://127.0.0.1:8321/v1 OPENAI_API_KEY=$ASSTCTL_SERVER_API_KEY python app.py
    """
    from asstctl.server.embedded import default_db, default_rules, serve_forever
    from asstctl.server.faults import Faults

    faults = Faults.parse(fault_spec, latency_ms=latency_ms, seed=fault_seed)
    serve_forever(
        db or str(default_db()),
        host=host,
        port=port,
        api_key=api_key or None,
        faults=faults,
        rules_path=rules or default_rules(),
        on_ready=_announce,
    )
    click.echo("asstctl serve: stopped", err=True)


def _announce(server) -> None:
    key = "API key required" if server.state.config.api_key else "no API key needed (any string works)"
    click.echo(f"Serving the Assistants API at {server.base_url} (db: {_shown(server.store)}; {key})")


def _shown(store) -> str:
    path = store.shown
    if store.backend != "sqlite":
        return path
    if path == ":memory:":
        return ":memory:, nothing is kept"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
