"""Property tests (hypothesis) against one server per module, emptied between examples:

* for random spec sets, apply (create), apply again with other random specs (update, --prune), then
  plan: always no changes, one object per key;
* for random remote states (foreign objects, other projects', half-tagged, duplicates of this
  project), apply --prune and destroy never touch a foreign object (id and content unchanged)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asstctl.reconcile.apply import apply_plan
from asstctl.ownership import MANAGED_BY, MANAGER, PROJECT as PROJECT_TAG, KEY, tags
from asstctl.server.embedded import start_server
from tests.reconcile.helpers import destroy_plan, make_plan, spec
from tests.reliability.helpers import PROJECT, assert_untouched, owned_by_key, sdk, snapshot

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KEYS = ["triage", "faq", "billing", "search", "x-1", "long_key_name"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
NUMBER = st.floats(0, 1, allow_nan=False).map(lambda value: round(value, 3))
FUNCTION_NAMES = st.sets(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), max_size=3)


def function_tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"Does {name}.",
                                             "parameters": {"type": "object", "properties": {}}}}


@st.composite
def tool_lists(draw) -> list[dict]:
    builtins = draw(st.sets(st.sampled_from(["code_interpreter", "file_search"])))
    tools = [{"type": kind} for kind in sorted(builtins)] + [function_tool(n) for n in sorted(draw(FUNCTION_NAMES))]
    return draw(st.permutations(tools))


OPTIONAL = {
    "name": TEXT.map(lambda text: text[:256]),
    "description": TEXT,
    "instructions": TEXT,
    "temperature": NUMBER.map(lambda value: value * 2),
    "top_p": NUMBER,
    "tools": tool_lists(),
    "response_format": st.sampled_from(["auto", {"type": "text"}, {"type": "json_object"}]),
    "reasoning_effort": st.sampled_from(["low", "medium", "high"]),  # not returned by the server
    "metadata": st.dictionaries(st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True), TEXT, max_size=4),
}


@st.composite
def field_sets(draw) -> dict:
    fields = {"model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini", "gpt-4.1"]))}
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL)))):
        fields[name] = draw(OPTIONAL[name])
    return fields


SPEC_SETS = st.dictionaries(st.sampled_from(KEYS), field_sets(), max_size=5)
REMOTE_KINDS = st.sampled_from(["hand-made", "other project", "managed-by only", "project only", "ours"])
REMOTE_STATES = st.lists(st.tuples(REMOTE_KINDS, st.sampled_from(KEYS)), max_size=8)


@pytest.fixture(scope="module")
def server():
    with start_server(":memory:") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with sdk(server.base_url, server.api_key) as made:
        yield made


def empty(server) -> None:
    for obj in server.store.all("assistant"):
        server.store.delete("assistant", obj["id"])


def specs_of(spec_set: dict) -> list:
    return [spec(key, **fields) for key, fields in spec_set.items()]


def converge(client, specs: list, prune: bool = False) -> None:
    result = apply_plan(make_plan(client, specs, prune=prune, project=PROJECT), client)
    assert not result.failed, [(failure.key, failure.error) for failure in result.failed]


@SETTINGS
@given(first=SPEC_SETS, second=SPEC_SETS)
def test_apply_then_plan_is_always_a_no_op(server, client, first, second):
    empty(server)
    converge(client, specs_of(first))
    plan = make_plan(client, specs_of(first), project=PROJECT)
    assert not plan.has_changes(), plan.counts()
    converge(client, specs_of(second), prune=True)
    plan = make_plan(client, specs_of(second), prune=True, project=PROJECT)
    assert not plan.has_changes(), [(a.key, a.kind, [c.to_dict() for c in a.changes]) for a in plan.actions]
    owned = owned_by_key(snapshot(client))
    assert sorted(owned) == sorted(second) and all(len(objs) == 1 for objs in owned.values())


def seed_remote(client, state: list[tuple[str, str]]) -> None:
    metadata = {
        "hand-made": lambda key: None,
        "other project": lambda key: tags("other", key, "0" * 16),
        "managed-by only": lambda key: {MANAGED_BY: MANAGER, KEY: key},
        "project only": lambda key: {PROJECT_TAG: PROJECT, KEY: key},
        "ours": lambda key: tags(PROJECT, key, "0" * 16),
    }
    for kind, key in state:
        client.beta.assistants.create(model="gpt-4o", name=f"{kind} {key}", metadata=metadata[kind](key))


@SETTINGS
@given(state=REMOTE_STATES, spec_set=SPEC_SETS)
def test_nothing_foreign_is_ever_touched(server, client, state, spec_set):
    empty(server)
    seed_remote(client, state)
    before = snapshot(client)
    foreign = {id: obj for id, obj in before.items() if id not in {o["id"] for objs in
                                                                   owned_by_key(before).values() for o in objs}}
    assert len(foreign) == sum(kind != "ours" for kind, _ in state)
    converge(client, specs_of(spec_set), prune=True)
    after = snapshot(client)
    assert_untouched(foreign, after)
    owned = owned_by_key(after)
    assert sorted(owned) == sorted(spec_set) and all(len(objs) == 1 for objs in owned.values())
    result = apply_plan(destroy_plan(client, specs_of(spec_set), project=PROJECT), client)
    assert not result.failed
    after = snapshot(client)
    assert_untouched(foreign, after)
    assert set(after) == set(foreign)
