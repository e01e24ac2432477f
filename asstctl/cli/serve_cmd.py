"""``asstctl serve``: run asstctl's Assistants API v2 server in the foreground."""

from __future__ import annotations

import functools
import logging
import os

import click

KEY_ENV = "ASSTCTL_SERVER_API_KEY"


@click.group(invoke_without_command=True)
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
@click.option("--admin-key-env", metavar="VAR",
              help="Environment variable holding the admin key: it manages projects and their keys through "
                   "OpenAI's Administration API (/v1/organization/projects...) and reads /metrics. "
                   "See docs/deploy.md, \"Projects and keys\".")
@click.option("--metrics", "metrics", is_flag=True,
              help="Serve GET /metrics (Prometheus text format; with the admin key when there is one).")
@click.option("--ready-checks-upstream", "ready_checks_upstream", is_flag=True,
              help="GET /readyz also checks the upstream (GET /models, 2 s at most): unready while it is down.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON line per request and per run transition (request id, project, run id, replica).")
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
@click.option("--upstream", metavar="URL",
              help="Run turns on this OpenAI-compatible Chat Completions API instead of the offline engine, "
                   "e.g. http://localhost:11434/v1. [default: the project's engine.upstream]")
@click.option("--upstream-key-env", metavar="NAME",
              help="Environment variable holding the upstream's key (never the key itself). "
                   "[default: OPENAI_API_KEY, AZURE_OPENAI_API_KEY with --azure-api-version; "
                   "a loopback upstream may go without]")
@click.option("--model-map", metavar="PATTERN=MODEL", multiple=True,
              help="Send runs whose model matches the fnmatch PATTERN to the upstream as MODEL. "
                   "Repeatable; the first match wins; unmatched names go as they are.")
@click.option("--azure-api-version", metavar="VERSION",
              help="The upstream is Azure OpenAI: deployments in the path (the mapped model names), "
                   "this api-version, the key in the api-key header.")
@click.option("--upstream-dialect", metavar="NAME",
              help="A named profile of the upstream's quirks (openai, azure, llama.cpp, vllm, ollama, lmstudio, "
                   "litellm, mistral, groq, deepseek, bedrock, gemini, anthropic). [default: the project's "
                   "engine.dialect; none: learned from the upstream's refusals]")
@click.option("--embeddings-model", metavar="NAME",
              help="file_search: embed chunks and queries with this model on the upstream's /embeddings "
                   "(dense retrieval fused with full-text search). Needs an upstream. "
                   "[default: the project's engine.embeddings.model; none: full-text search only]")
@click.option("--upstream-api", type=click.Choice(["chat", "responses"]), metavar="API",
              help="The upstream API each turn runs on: chat (POST /chat/completions) or responses "
                   "(POST /responses, stateless: store false). [default: the project's engine.api, else chat]")
# -- code_interpreter sandbox (docs/engine.md, "The code_interpreter sandbox") --
@click.option("--code-timeout", "code_wall_seconds", type=click.FloatRange(min=1), default=60, show_default=True,
              metavar="SECONDS", help="code_interpreter: wall time of one call; the session restarts after it.")
@click.option("--code-cpu-seconds", type=click.IntRange(min=1), default=30, show_default=True, metavar="N",
              help="code_interpreter: CPU seconds of one call.")
@click.option("--code-memory-mb", type=click.IntRange(min=64), default=1024, show_default=True, metavar="MB",
              help="code_interpreter: address space of each sandboxed process.")
@click.option("--code-max-processes", type=click.IntRange(min=2), default=16, show_default=True, metavar="N",
              help="code_interpreter: processes and threads of one session.")
@click.option("--code-output-bytes", type=click.IntRange(min=100), default=20_000, show_default=True, metavar="N",
              help="code_interpreter: output kept per call (the rest is dropped and counted).")
@click.option("--code-data-mb", type=click.IntRange(min=1), default=256, show_default=True, metavar="MB",
              help="code_interpreter: size of /mnt/data (and /tmp) in each session.")
@click.option("--code-shm-mb", type=click.IntRange(min=1), default=64, show_default=True, metavar="MB",
              help="code_interpreter: size of /dev/shm in each session.")
@click.option("--code-max-inodes", type=click.IntRange(min=100), default=100_000, show_default=True, metavar="N",
              help="code_interpreter: files and directories in one session's /mnt/data, /tmp and /dev/shm.")
@click.option("--code-file-mb", type=click.IntRange(min=1), default=64, show_default=True, metavar="MB",
              help="code_interpreter: largest file a call may write (and total returned per call).")
@click.option("--code-idle-minutes", type=click.FloatRange(min=0.1), default=20, show_default=True, metavar="N",
              help="code_interpreter: end a thread's session after N idle minutes.")
@click.option("--code-max-sessions", type=click.IntRange(min=1), default=16, show_default=True, metavar="N",
              help="code_interpreter: live sessions; the least recently used idle one ends beyond N.")
@click.option("--code-max-total-memory-mb", type=click.IntRange(min=0), default=4096, show_default=True, metavar="MB",
              help="code_interpreter: memory of all sessions together; beyond it the largest ends (0: no cap).")
@click.option("--code-max-total-disk-mb", type=click.IntRange(min=0), default=4096, show_default=True, metavar="MB",
              help="code_interpreter: /mnt/data, /tmp and /dev/shm of all sessions together (0: no cap).")
@click.option("--code-cgroup", type=click.Choice(["auto", "v2", "v1", "none"]), default="auto", show_default=True,
              metavar="MODE", help="code_interpreter: the kernel's limit of all sessions' memory: cgroup v2, v1, "
                                   "auto (v2, else v1) or none (the watchdog alone).")
@click.option("--code-run-output-mb", type=click.IntRange(min=1), default=64, show_default=True,
              metavar="MB", help="code_interpreter: output files (and images) one run may store.")
@click.option("--code-thread-output-mb", type=click.IntRange(min=1), default=256, show_default=True,
              metavar="MB", help="code_interpreter: output files (and images) one thread may store.")
@click.option("--ingest-workers", type=click.IntRange(1, 64), default=2, show_default=True, metavar="N",
              help="file_search: worker processes extracting and chunking vector store files.")
@click.option("--ingest-memory-mb", type=click.IntRange(min=128), default=512, show_default=True, metavar="MB",
              help="file_search: memory per ingestion worker; a file needing more ends failed.")
@click.option("--ingest-timeout", type=click.FloatRange(min=1), default=300, show_default=True, metavar="SECONDS",
              help="file_search: time to extract and chunk one file; a file taking longer ends failed.")
@click.option("--embeddings-batch-size", type=click.IntRange(1, 2048), default=64, show_default=True, metavar="N",
              help="file_search: inputs per /embeddings request (chunks of several files share one).")
@click.option("--unsafe-code-interpreter", "code_unsafe", is_flag=True,
              help="DEVELOPMENT ONLY: run code_interpreter code without the bubblewrap sandbox "
                   "(it can read this server's files and keys).")
@click.pass_context
def serve(ctx, host, port, db, api_key, admin_key_env, metrics, ready_checks_upstream, log_format, rules, latency_ms,
          fault_spec, fault_seed, upstream, upstream_key_env, model_map, azure_api_version, embeddings_model, max_upload_mb, max_body_mb,
          upstream_dialect=None, upstream_api=None, ingest_workers=2, ingest_memory_mb=512,
          ingest_timeout=300.0, embeddings_batch_size=64,
          **code_options) -> None:
    """Serve the Assistants API v2 on /v1 for any OpenAI SDK (Ctrl-C stops it).

    Data persists in SQLite, or in PostgreSQL for several replicas behind
    a load balancer (see docs/deploy.md). Without an API key only loopback
    is allowed.
    Fault kinds: 429, 500, 503, drop (connection closed), lost (a write is
    committed but its response never arrives).

    Turns are answered by the offline engine (deterministic, no model), or with
    --upstream (or `engine:` in asstctl.yaml) by a real model behind any
    OpenAI-compatible Chat Completions API: OpenAI, Azure OpenAI, vLLM,
    Ollama, llama.cpp's server, a LiteLLM proxy.

    Several apps on one server: each gets a project and keys that see only
    its objects (`asstctl serve keys --help`, or the admin key's API).

    \b
    Example:
        export ASSTCTL_SERVER_API_KEY=$(openssl rand -hex 16)
        asstctl serve --port 8321 --upstream http://localhost:11434/v1 --model-map 'gpt-4*=llama3.1:8b'
        OPENAI_BASE_URL=http://127.0.0.1:8321/v1 OPENAI_API_KEY=$ASSTCTL_SERVER_API_KEY python app.py
    """
    if ctx.invoked_subcommand is not None:
        return
    from asstctl.server.embedded import default_db, default_rules, default_upstream, is_loopback, serve_forever
    from asstctl.server.app import API_KEY_HINT, api_key_problem, exposed_key_problem
    from asstctl.server.engine.config import from_flags
    from asstctl.server.faults import Faults
    from asstctl.server.retrieval.pool import IngestLimits

    if api_key_problem(api_key):  # the key itself is never shown
        raise click.BadParameter(f"{api_key_problem(api_key)}, so no client could ever present it. {API_KEY_HINT}",
                                 param_hint=f"--api-key / {KEY_ENV}")
    admin_key = _admin_key(admin_key_env, api_key_problem, API_KEY_HINT)
    for key, what, named in ((api_key, "the API key", f"--api-key / {KEY_ENV}"),
                             (admin_key, f"the admin key in {admin_key_env}", "--admin-key-env")):
        weak = None if is_loopback(host) else exposed_key_problem(key, host)
        if weak:  # named by its variable, never shown
            raise click.BadParameter(f"{what}: {weak}", param_hint=named)
    json_logs = log_format == "json"
    warnings: list[str] = []  # said on stderr: at once as text, or with --log-format json once its lines are set up
    sandbox = _sandbox_config(code_options, warnings if json_logs else None)
    faults = Faults.parse(fault_spec, latency_ms=latency_ms, seed=fault_seed)
    if upstream:
        upstream_config = from_flags(upstream, upstream_key_env, model_map, azure_api_version, embeddings_model,
                                     upstream_dialect, upstream_api)
    else:
        _only_with_upstream(upstream_key_env, model_map, azure_api_version)
        upstream_config = _with_embeddings(default_upstream(), embeddings_model)
        if upstream_dialect:
            upstream_config = _with_dialect(upstream_config, upstream_dialect)
        if upstream_api:  # the project's upstream, on the API asked for
            if upstream_config is None:
                raise click.UsageError("--upstream-api needs an upstream: give --upstream URL (or engine.upstream "
                                       "in asstctl.yaml)")
            upstream_config.api = upstream_api
    serve_forever(
        db or str(default_db()),
        host=host,
        port=port,
        api_key=api_key,
        faults=faults,
        rules_path=rules or default_rules(),
        upstream=upstream_config,
        on_ready=functools.partial(_announce, warnings=warnings),
        max_upload_bytes=max_upload_mb << 20,
        max_body_bytes=max_body_mb << 20,
        sandbox=sandbox,
        admin_key=admin_key,
        metrics=metrics,
        ready_checks_upstream=ready_checks_upstream,
        log_format=log_format,
        ingest=IngestLimits(workers=ingest_workers, memory_mb=ingest_memory_mb, file_seconds=ingest_timeout,
                            embeddings_batch=embeddings_batch_size),
    )
    if json_logs:  # every stderr line is JSON
        logging.getLogger("asstctl.server").info("asstctl serve: stopped")
    else:
        click.echo("asstctl serve: stopped", err=True)


def _admin_key(name, problem_of, hint) -> str | None:
    """The admin key from the variable ``--admin-key-env`` names (never shown)."""
    if not name:
        return None
    key = os.environ.get(name)
    if key is None:
        raise click.BadParameter(f"the environment variable {name} is not set", param_hint="--admin-key-env")
    if problem_of(key):
        raise click.BadParameter(f"the admin key in {name}: {problem_of(key)}. {hint}", param_hint="--admin-key-env")
    return key


def _only_with_upstream(key_env, model_map, azure_api_version) -> None:
    given = [name for name, value in (("--upstream-key-env", key_env), ("--model-map", model_map),
                                      ("--azure-api-version", azure_api_version)) if value]
    if given:
        raise click.UsageError(f"{given[0]} needs --upstream URL (the Chat Completions API to run turns on)")


def _with_dialect(upstream_config, dialect):
    """The project's upstream with --upstream-dialect (it needs an upstream)."""
    if upstream_config is None:
        raise click.UsageError("--upstream-dialect needs --upstream URL (or engine.upstream in asstctl.yaml)")
    from asstctl.server.engine.config import dialect_name

    upstream_config.dialect = dialect_name(dialect, "--upstream-dialect")
    return upstream_config


def _with_embeddings(upstream_config, embeddings_model):
    """The project's upstream, with --embeddings-model when given (it needs an upstream)."""
    if not embeddings_model:
        return upstream_config
    if upstream_config is None:
        raise click.UsageError("--embeddings-model needs an upstream serving /embeddings: give --upstream URL "
                               "(or engine.upstream in asstctl.yaml)")
    from asstctl.server.engine.config import embeddings_section

    upstream_config.embeddings = embeddings_section("--embeddings-model", {"model": embeddings_model})
    return upstream_config


def _sandbox_config(options: dict, warnings: list[str] | None = None):
    from asstctl.server.sandbox import SandboxConfig

    values = {name[len("code_"):]: value for name, value in options.items()}
    values["idle_seconds"] = values.pop("idle_minutes") * 60
    if values["unsafe"]:
        warning = ("asstctl serve: WARNING: --unsafe-code-interpreter: code_interpreter runs model code "
                   "WITHOUT a sandbox, as this user, with access to this machine.")
        if warnings is not None:
            warnings.append(warning)
        else:
            click.echo(warning, err=True)
    return SandboxConfig(**values)


def _announce(server, warnings: tuple[str, ...] | list[str] = ()) -> None:
    """The start-up banner, written at once (whoever waits for its first line finds all of it), after the
    ``warnings`` held for the server's logger (``--log-format json``: JSON lines on stderr)."""
    for warning in warnings:
        logging.getLogger("asstctl.server").warning(warning)
    config = server.state.config
    key = "API key required" if config.api_key or config.admin_key else "no API key needed (any string works)"
    lines = [f"Serving the Assistants API at {server.base_url} (db: {_shown(server.store)}; {key})"]
    upstream = server.state.config.upstream
    if upstream is not None:
        kind = "Azure OpenAI " if upstream.is_azure else ""
        key_note = (f"key from ${upstream.key_env}" if (os.environ.get(upstream.key_env) or "").strip()
                    else f"no key: ${upstream.key_env} is not set")
        api = ", Responses API" if upstream.api == "responses" else ""
        lines.append(f"Engine: upstream {kind}{upstream.host} ({key_note}{api})")
        if upstream.api != "responses":  # dialects are Chat Completions servers'
            lines.append(f"Dialect: {upstream.dialect} (named)" if upstream.dialect else
                         "Dialect: learned from the upstream's refusals (--upstream-dialect names one)")
        if upstream.embeddings_model:
            lines.append(f"file_search: embeddings model {upstream.embeddings_model} on {upstream.host}")
    click.echo("\n".join(lines))


def _shown(store) -> str:
    path = store.shown
    if store.backend != "sqlite":
        return path
    if path == ":memory:":
        return ":memory:, nothing is kept"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


from asstctl.cli.keys_cmd import keys  # noqa: E402 - `asstctl serve keys ...`

serve.add_command(keys)
