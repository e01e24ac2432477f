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
@click.option("--db", metavar="PATH",
              help="SQLite database file, ':memory:' for a throwaway server. "
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
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=512, show_default=True, metavar="N",
              help="Largest file /v1/files accepts (413 beyond; the API's limit is 512).")
@click.option("--max-body-mb", type=click.IntRange(min=1), default=32, show_default=True, metavar="N",
              help="Largest JSON request body (413 beyond).")
def serve(host, port, db, api_key, rules, latency_ms, fault_spec, fault_seed, max_upload_mb, max_body_mb) -> None:
    """Serve the Assistants API v2 on /v1 for any OpenAI SDK (Ctrl-C stops it).

    Data persists in SQLite. Without an API key only loopback is allowed.
    Fault kinds: 429, 500, 503, drop (connection closed), lost (a write is
    committed but its response never arrives).

    \b
    Example:
        export ASSTCTL_SERVER_API_KEY=$(openssl rand -hex 16)
        asstctl serve --port 8321
        OPENAI_BASE_URL=http://127.0.0.1:8321/v1 OPENAI_API_KEY=$ASSTCTL_SERVER_API_KEY python app.py
    """
    from asstctl.server.embedded import default_db, default_rules, serve_forever
    from asstctl.server.app import API_KEY_HINT, api_key_problem
    from asstctl.server.faults import Faults

    if api_key_problem(api_key):  # the key itself is never shown
        raise click.BadParameter(f"{api_key_problem(api_key)}, so no client could ever present it. {API_KEY_HINT}",
                                 param_hint=f"--api-key / {KEY_ENV}")
    faults = Faults.parse(fault_spec, latency_ms=latency_ms, seed=fault_seed)
    serve_forever(
        db or str(default_db()),
        host=host,
        port=port,
        api_key=api_key,
        faults=faults,
        rules_path=rules or default_rules(),
        on_ready=_announce,
        max_upload_bytes=max_upload_mb << 20,
        max_body_bytes=max_body_mb << 20,
    )
    click.echo("asstctl serve: stopped", err=True)


def _announce(server) -> None:
    key = "API key required" if server.state.config.api_key else "no API key needed (any string works)"
    click.echo(f"Serving the Assistants API at {server.base_url} (db: {_shown(server.store.path)}; {key})")


def _shown(path: str) -> str:
    if path == ":memory:":
        return ":memory:, nothing is kept"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
