"""Import and export: remote assistants → spec files, and adopting an unmanaged assistant.

    text = spec_text(obj)                              # a remote assistant (dict) as spec YAML
    done = import_assistant(project, client, "triage", "asst_abc")   # write assistants/triage.yaml, tag it
    batch = prepare_export(project, client, include_unmanaged=True)  # what export would write / adopt
    finish_export(project, client, batch)

A written spec is the remote object in the canonical spec form (short tool forms, server defaults
left out, long or multi-line strings as ``|`` blocks, ``${`` escaped as ``$${``). Every spec is
checked before anything is written or tagged: the real loader reads it back and the reconciler's
own comparison (``plan.existing_action``) must find nothing to do, so a following ``asstctl plan``
is a no-op. Adopting an assistant only changes its metadata: the user's keys plus asstctl's tags,
with the spec-hash computed exactly as ``apply`` computes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from asstctl.reconcile import normalize
from asstctl.errors import AsstctlError, SpecError
from asstctl.ownership import owner, split_hash_tag, user_metadata
from asstctl.reconcile.porting_knowledge import declarations

BLOCK_OVER = 300  # strings longer than this (or multi-line) are written as `|` blocks
SLUG_LENGTH = 56
SCHEMA_FILE = ".asstctl/spec.schema.json"
EXISTS, FAILED = "exists", "failed"
# The loader's ${VAR} syntax (asstctl.spec.loader); each match gets one more `$` to stay literal.
VARIABLE = re.compile(r"\$(\$?)\{([^}]*)\}")


# --- remote object → spec text -------------------------------------------------------------------

def spec_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The spec of a remote assistant, in spec order, without the server's defaults."""
    model = obj.get("model")
    out: dict[str, Any] = {name: obj[name] for name in ("name", "description") if obj.get(name)}
    out["model"] = model
    if obj.get("instructions"):
        out["instructions"] = obj["instructions"]
    out.update({name: obj[name] for name in normalize.SAMPLING_FIELDS if normalize.number(obj.get(name)) != 1.0})
    effort = reasoning_effort(obj)
    if effort:
        out["reasoning_effort"] = effort
    fmt = response_format(obj.get("response_format"))
    if fmt is not None:
        out["response_format"] = fmt
    if obj.get("tools"):
        out["tools"] = [spec_tool(tool, model) for tool in obj["tools"]]
    if normalize.tool_resources(obj.get("tool_resources")):
        out["tool_resources"] = normalize.tool_resources(obj.get("tool_resources"))
    if user_metadata(obj.get("metadata")):
        out["metadata"] = user_metadata(obj.get("metadata"))
    out.update(normalize.agent_fields(obj))  # an agent's (docs/agents.md), without the server's defaults
    return out


def reasoning_effort(obj: dict[str, Any]) -> str | None:
    """The API does not return it: recovered from asstctl's spec-hash tag (a handful of possible values),
    else what the server returned (asstctl's own server does)."""
    from asstctl.ownership import hidden_hash
    from asstctl.spec.schema import REASONING_EFFORTS

    recorded = split_hash_tag(obj.get("metadata"))[1]
    found = [value for value in REASONING_EFFORTS if recorded and hidden_hash({"reasoning_effort": value}) == recorded]
    return found[0] if found else obj.get("reasoning_effort")


def response_format(value: Any) -> Any:
    """``None`` for the default (``auto``), ``text``/``json_object`` in the short form, else the mapping."""
    value = normalize.response_format(value)
    if value == "auto":
        return None
    if isinstance(value, dict) and set(value) == {"type"}:
        return value["type"]
    if isinstance(value, dict) and isinstance(value.get("json_schema"), dict) and not value["json_schema"]["strict"]:
        value["json_schema"].pop("strict")
    return value


def spec_tool(tool: dict[str, Any], model: str | None) -> Any:
    """A tool in the short spec form: ``code_interpreter``, ``{file_search: {...}}``, ``{function: {...}}``."""
    tool = normalize.tool_(tool, model)
    kind = tool.get("type")
    if kind == "function":
        function = tool["function"]
        if not function["strict"]:
            function.pop("strict")
        if not function["parameters"]:
            function.pop("parameters")
        order = ("name", "description", "parameters", "strict", *function)
        return {"function": {k: function[k] for k in order if k in function}}
    if kind in ("code_interpreter", "file_search", "web_search", "computer_use") and set(tool) == {"type"}:
        return kind
    if kind in ("file_search", "mcp", "web_search", "computer_use") and set(tool) == {"type", kind}:
        return {kind: tool[kind]}
    return tool  # a type the spec format does not know: the check reports it


def block_safe(text: str) -> bool:
    """``text`` can be a literal block: printable characters, tabs and ``\n`` only (no other line breaks)."""
    return all(ch in "\t\n" or ("\x20" <= ch <= "\x7e") or ("\xa0" <= ch <= "\ud7ff" and ch not in "\u2028\u2029")
               or ("\ue000" <= ch <= "\ufffd" and ch != "\ufeff") or "\U00010000" <= ch <= "\U0010ffff" for ch in text)


def escaped(value: Any) -> Any:
    """Every string with ``${...}`` written so that the loader's interpolation gives it back unchanged."""
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    if isinstance(value, str):
        return VARIABLE.sub(lambda match: "$" + match.group(0), value)
    return value


def spec_text(obj: dict[str, Any], comment: str = "", schema_ref: str | None = None, *, key: str = "",
              path: Path | None = None, known=None) -> str:
    """The spec file of a remote assistant: optional modeline and comment, then the YAML; with ``known``
    (asstctl.porting_knowledge.Declarations) its vector store and code files are declarations, not ids."""
    from asstctl.reconcile.porting_knowledge import declare

    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False):
            return super().increase_indent(flow, False)  # list items indented under their key

        def ignore_aliases(self, data: Any) -> bool:
            return True

        def analyze_scalar(self, scalar: str):
            analysis = super().analyze_scalar(scalar)
            analysis.allow_block = analysis.allow_block or block_safe(scalar)  # PyYAML refuses trailing spaces, tabs
            return analysis

    def string(dumper: yaml.SafeDumper, value: str):
        style = "|" if "\n" in value or len(value) > BLOCK_OVER else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, string)
    fields = declare(spec_fields(obj), key, Path(path).parent if path else Path("."), known)
    body = yaml.dump(escaped(fields), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=4096)
    head = [f"# yaml-language-server: $schema={schema_ref}"] if schema_ref else []
    head += [f"# {line}" for line in comment.splitlines()]
    return "".join(line + "\n" for line in head) + body


# --- checking a spec before it is written ---------------------------------------------------------

def checked_spec(project, key: str, obj: dict[str, Any], text: str, path: Path, names: dict[str, str] | None = None):
    """The :class:`AssistantSpec` the loader reads from ``text`` at ``path`` (files it names are relative to
    ``path``); raises when ``text`` is not a valid spec or would not plan as a no-op against ``obj`` once adopted."""
    from asstctl.spec.loader import known_targets, read_spec, shown
    from asstctl.spec.resolve import resolve

    if names:  # declared files are relative to where the spec goes, so that folder must exist to find them
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asstctl-") as directory:
        scratch = Path(directory) / path.name
        scratch.write_text(text, encoding="utf-8")
        doc, problems = read_spec(scratch, known_targets(project))
        if doc is not None:
            doc.path = shown(path)  # as if written already: declared knowledge is found next to it
        spec, more = resolve(doc, key, None) if doc is not None and not problems else (None, [])
    problems = [problem.replace(shown(scratch), shown(path)) for problem in problems + more]
    if problems:
        raise SpecError(problems, hint=f"{obj['id']} uses something a spec cannot express or `asstctl validate` "
                                       "rejects (see above); nothing was written.")
    check_no_op(project, spec, obj, names)
    return spec


def adopted_metadata(project, spec) -> dict[str, str]:
    """The metadata an adopted object gets: the user's keys and the tags apply would set."""
    from asstctl.reconcile.kinds.assistant import request_body

    return request_body(spec, project.name)["metadata"]


def check_no_op(project, spec, obj: dict[str, Any], names: dict[str, str] | None = None) -> None:
    """Raise unless the reconciler finds nothing to do for ``spec`` against ``obj`` (tagged as adopted);
    ``names``: remote knowledge ids -> references, as the reconciler compares them."""
    from asstctl.ownership import SPEC_HASH
    from asstctl.reconcile.model import NOOP

    tagged = obj if owner(obj)[0] == project.name else {**obj, "metadata": adopted_metadata(project, spec)}
    action = _action(project, spec, tagged, names)
    changes = [change.path for change in action.changes if change.path != f"metadata.{SPEC_HASH}"]
    if action.kind != NOOP and changes:
        raise AsstctlError(f"{obj['id']} cannot be written as a spec that plans as a no-op "
                           f"(differs in {', '.join(changes)}); nothing was written",
                           hint="This is a bug in asstctl: please report it with the assistant's JSON.")


def drifted(project, spec, obj: dict[str, Any], names: dict[str, str] | None = None) -> bool:
    """A managed object changed outside asstctl: its spec-hash tag is stale (apply refreshes it)."""
    from asstctl.reconcile.model import NOOP

    return owner(obj)[0] == project.name and _action(project, spec, obj, names).kind != NOOP


def _action(project, spec, obj: dict[str, Any], names: dict[str, str] | None):
    """What plan would do for ``spec`` against ``obj``, knowledge compared as plan compares it."""
    from asstctl.reconcile.knowledge import with_resources
    from asstctl.reconcile.kinds.assistant import existing_action

    if names is not None:
        spec = with_resources(spec)
    return existing_action(spec, obj, project.name, names)


# --- writing and tagging ---------------------------------------------------------------------------

def write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AsstctlError(f"cannot create {path.parent}: {error.strerror or error}") from None
    scratch = path.with_name(f".{path.name}.asstctl-new")
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    except OSError as error:
        scratch.unlink(missing_ok=True)
        raise AsstctlError(f"cannot write {path}: {error.strerror or error}") from None


def tag(client, project, spec, obj: dict[str, Any]) -> dict[str, str]:
    """Mark ``obj`` as this project's assistant ``spec.key`` (its metadata only); returns the new metadata."""
    from asstctl.backends import backend_for

    backend = backend_for(client)
    metadata = adopted_metadata(project, spec)
    try:
        backend.update_assistant(obj["id"], {"metadata": metadata})
    except backend.errors as error:
        raise AsstctlError(f"tagging {obj['id']} failed: {str(error).splitlines()[0]}") from None
    return metadata


def schema_ref(project, directory: Path) -> str | None:
    """The modeline's path from ``directory`` to the project's spec schema (`asstctl schema --output`);
    ``None`` outside the project."""
    directory, root = directory.resolve(), Path(project.root).resolve()
    if directory != root and root not in directory.parents:
        return None
    return Path(os.path.relpath(root / SCHEMA_FILE, directory)).as_posix()


def project_keys(project) -> dict[str, Path]:
    """key -> spec file of every spec in the project (an unreadable file counts by its file name)."""
    from asstctl.spec.loader import key_of, read_spec, spec_files

    keys: dict[str, Path] = {}
    for path in spec_files(project):
        doc, _ = read_spec(path)
        keys.setdefault(key_of(doc) if doc is not None and isinstance(doc.data, dict) else path.stem, path)
    return keys


def check_key(key: str) -> None:
    from asstctl.spec.schema import KEY_PATTERN

    if not re.match(KEY_PATTERN, key):
        raise AsstctlError(f"`{key}` is not a valid key: it must match {KEY_PATTERN} "
                           "(lower-case letters, digits, `_`, `.` and `-`; at most 64)")


def derive_key(name: str | None, taken: Iterable[str]) -> str:
    """A valid key from an assistant's name, not in ``taken``: "Support Bot" → ``support-bot(-2...)``."""
    ascii_name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:SLUG_LENGTH].strip("-") or "assistant"
    taken = set(taken)
    key, number = slug, 2
    while key in taken:
        key, number = f"{slug}-{number}", number + 1
    return key


# --- asstctl import ----------------------------------------------------------------------------------

@dataclass
class Imported:
    key: str
    path: Path
    remote_id: str
    metadata: dict[str, str] | None  # the metadata set when adopted; None: it was already this project's
    drift: bool = False


def import_assistant(project, client, key: str, assistant_id: str, *, force: bool = False) -> Imported:
    """Write the spec of ``assistant_id`` as ``key`` and adopt the assistant (tag it) unless it is already ours."""
    from asstctl.reconcile.remote import read_remote

    check_key(key)
    path = import_path(project, key, force)
    remote = read_remote(client, project.name)
    obj = find_object(remote, assistant_id)
    check_adoptable(remote, obj, key)
    ours = owner(obj)[0] == project.name
    known = declarations(project, client, [obj]) if ours else None
    names = known.names if known is not None else None
    text = spec_text(obj, f"Imported from {assistant_id} by `asstctl import`.", schema_ref(project, path.parent),
                     key=key, path=path, known=known)
    spec = checked_spec(project, key, obj, text, path, names)
    metadata = None if ours else tag(client, project, spec, obj)
    write_atomically(path, text)
    return Imported(key, path, assistant_id, metadata, drift=drifted(project, spec, obj, names))


def import_path(project, key: str, force: bool) -> Path:
    """Where the spec of ``key`` goes; refuses to overwrite without ``force`` and to reuse another file's key."""
    from asstctl.spec.loader import shown

    path = Path(project.specs_dir) / f"{key}.yaml"
    other = project_keys(project).get(key)
    if other is not None and other.resolve() != path.resolve():
        raise AsstctlError(f"the key `{key}` is already used by {shown(other)}",
                           hint="Pick another key (every assistant needs its own).")
    if path.exists() and not force:
        raise AsstctlError(f"{shown(path)} already exists", hint="Pick another key, or pass --force to overwrite it.")
    return path


def find_object(remote, assistant_id: str) -> dict[str, Any]:
    everything = [*remote.owned(), *remote.foreign]
    for obj in everything:
        if obj["id"] == assistant_id:
            return obj
    raise AsstctlError(f"there is no assistant {assistant_id} on this target ({len(everything)} found)",
                       hint="Check the id and --target/--base-url; `asstctl export --all` lists what is there.")


def check_adoptable(remote, obj: dict[str, Any], key: str) -> None:
    """Refuse another project's assistant, one of ours under another key, and a key used by another object."""
    project, current = owner(obj)
    if project not in (None, remote.project):
        raise AsstctlError(f"{obj['id']} is managed by the asstctl project `{project}` (key `{current}`): it is theirs "
                           "and asstctl never changes another project's assistants",
                           hint="Import it in that project, or ask its owners to `asstctl destroy` it first.")
    if project == remote.project and current and current != key:
        raise AsstctlError(f"{obj['id']} is already managed by this project as `{current}`",
                           hint=f"`asstctl export {current}` writes its spec.")
    taken = remote.find(key)
    if taken is not None and taken["id"] != obj["id"]:
        raise AsstctlError(f"the key `{key}` already belongs to {taken['id']} on this target",
                           hint="Pick another key for the import.")


# --- asstctl export ----------------------------------------------------------------------------------

@dataclass
class ExportItem:
    key: str
    obj: dict[str, Any]
    path: Path
    adopt: bool = False  # unmanaged: tag it when written
    skipped: str | None = None  # why it is not written: EXISTS, or FAILED (see ExportBatch.failures)
    text: str = ""
    spec: Any = None
    drift: bool = False


@dataclass
class ExportBatch:
    items: list[ExportItem] = field(default_factory=list)
    other_projects: int = 0  # assistants of other asstctl projects: never exported
    failures: list[str] = field(default_factory=list)

    def to_adopt(self) -> list[ExportItem]:
        return [item for item in self.items if item.adopt and not item.skipped]

    def written(self) -> list[ExportItem]:
        return [item for item in self.items if not item.skipped]

    def kept(self) -> list[ExportItem]:
        return [item for item in self.items if item.skipped == EXISTS]


def prepare_export(project, client, keys: Iterable[str] = (), *, include_unmanaged: bool = False,
                   out_dir: str | Path | None = None, force: bool = False) -> ExportBatch:
    """What export writes (and adopts), every spec already checked; nothing is written yet."""
    from asstctl.reconcile.remote import read_remote

    remote = read_remote(client, project.name)
    directory = Path(out_dir) if out_dir is not None else Path(project.specs_dir)
    into_project = directory.resolve() == Path(project.specs_dir).resolve()
    files = project_keys(project) if into_project else {}
    batch = ExportBatch()
    for key, obj in sorted(selected(remote, list(keys)).items()):
        batch.items.append(ExportItem(key, obj, files.get(key, directory / f"{key}.yaml")))
    if include_unmanaged:
        add_unmanaged(batch, remote, directory, taken={*files, *remote.managed, *remote.duplicates}, adopt=into_project)
    known = declarations(project, client, [item.obj for item in batch.items if owner(item.obj)[0] == project.name])
    for item in batch.items:
        prepare_item(project, item, force, batch, known)
    return batch


def add_unmanaged(batch: ExportBatch, remote, directory: Path, taken: set[str], adopt: bool) -> None:
    """The assistants no asstctl project manages, oldest first, each under a key derived from its name."""
    for obj in remote.foreign:
        if owner(obj)[0] not in (None, remote.project):
            batch.other_projects += 1
            continue
        key = derive_key(obj.get("name"), taken)
        taken.add(key)
        batch.items.append(ExportItem(key, obj, directory / f"{key}.yaml", adopt=adopt))


def selected(remote, keys: list[str]) -> dict[str, dict[str, Any]]:
    unknown = [key for key in keys if key not in remote.managed]
    if unknown:
        known = ", ".join(sorted(remote.managed)) or "none"
        raise AsstctlError(f"no assistant of this project has the key {', '.join(f'`{k}`' for k in unknown)} "
                           f"on this target (managed keys: {known})")
    return {key: obj for key, obj in remote.managed.items() if not keys or key in keys}


def prepare_item(project, item: ExportItem, force: bool, batch: ExportBatch, known=None) -> None:
    if item.path.exists() and not force:
        item.skipped = EXISTS
        return
    comment = f"Exported from {item.obj['id']} by `asstctl export`."
    known = known if owner(item.obj)[0] == project.name else None
    names = known.names if known is not None else None
    item.text = spec_text(item.obj, comment, schema_ref(project, item.path.parent), key=item.key, path=item.path,
                          known=known)
    try:
        item.spec = checked_spec(project, item.key, item.obj, item.text, item.path, names)
    except AsstctlError as error:
        item.skipped = FAILED
        batch.failures.append(f"{item.obj['id']} ({item.key}): {error.message}")
        return
    item.drift = drifted(project, item.spec, item.obj, names)


def finish_export(project, client, batch: ExportBatch) -> None:
    """Write the prepared specs; tag the ones to adopt first (a failed tag leaves its file unwritten)."""
    for item in batch.written():
        try:
            if item.adopt:
                tag(client, project, item.spec, item.obj)
            write_atomically(item.path, item.text)
        except AsstctlError as error:
            item.skipped = FAILED
            batch.failures.append(f"{item.obj['id']} ({item.key}): {error.message}")
