"""`asstctl plan` and `apply` warn about a spec's `model:` that the target does not list (GET /models), with a
did-you-mean; end to end on the embedded server (GET /v1/models of the offline engine); neither fails over it."""

from __future__ import annotations

from click.testing import CliRunner

from asstctl.cli import cli
from asstctl.reconcile.plan import unlisted_models
from asstctl.spec.loader import load_specs
from asstctl.spec.project import load_project

LISTED = ["gpt-4o", "gpt-4o-mini", "o3"]


def write(root, files):
    (root / "asstctl.yaml").write_text("project: models\n")
    (root / "assistants").mkdir()
    for name, text in files.items():
        (root / "assistants" / name).write_text(text)


def test_an_unlisted_model_is_named_where_it_is_with_the_closest_listed_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"a.yaml": "name: A\nmodel: gpt-4oo\n", "b.yaml": "model: gpt-4o\n",
                     "c.yaml": "model: my-finetune\n"})
    specs = load_specs(load_project())
    assert unlisted_models(specs, LISTED, "http://127.0.0.1:8321/v1") == [
        "assistants/a.yaml:2:1: model `gpt-4oo` is not one http://127.0.0.1:8321/v1 lists (did you mean `gpt-4o`?)",
        "assistants/c.yaml:1:1: model `my-finetune` is not one http://127.0.0.1:8321/v1 lists "
        "(GET /models lists the ones it has)",
    ]
    assert unlisted_models(specs, [], "anywhere") == []  # a target that lists no models: nothing to say


def test_plan_and_apply_on_the_embedded_server_warn_of_a_model_it_does_not_list_and_only_of_it(tmp_path, monkeypatch):
    """apply warns too (a deploy job may run only apply), on stderr: its JSON report on stdout stays one document."""
    import json

    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"a.yaml": "name: A\nmodel: gpt-4oo\n", "b.yaml": "model: gpt-4o\n"})
    expected = ["Warning: assistants/a.yaml:2:1: model `gpt-4oo` is not one embedded server "
                "(.asstctl/server.sqlite3) lists (did you mean `gpt-4o`?)"]
    result = CliRunner().invoke(cli, ["plan"], env={"OPENAI_BASE_URL": None})
    assert result.exit_code == 0, result.output
    assert "+ create a" in result.output and "+ create b" in result.output
    assert [line for line in result.output.splitlines() if "Warning" in line] == expected
    applied = CliRunner().invoke(cli, ["apply", "--yes", "--output", "json"], env={"OPENAI_BASE_URL": None})
    assert applied.exit_code == 0, applied.output
    assert [line for line in applied.stderr.splitlines() if "Warning" in line] == expected
    assert json.loads(applied.stdout)["totals"]["created"] == 2
    (tmp_path / "assistants" / "a.yaml").write_text("name: A2\nmodel: gpt-4oo\n")  # a saved plan: warned when made,
    saved = CliRunner().invoke(cli, ["plan", "--out", "p.json"], env={"OPENAI_BASE_URL": None})  # not when applied
    assert [line for line in saved.output.splitlines() if "Warning" in line] == expected
    applied = CliRunner().invoke(cli, ["apply", "p.json", "--yes", "--output", "json"], env={"OPENAI_BASE_URL": None})
    assert applied.exit_code == 0, applied.output
    assert "Warning" not in applied.stderr and json.loads(applied.stdout)["totals"]["updated"] == 1


def test_an_azure_target_is_not_warned_about_its_deployment_names(tmp_path, monkeypatch, server):
    """Azure's GET /models lists base models while `model:` names a deployment: no warning there. The embedded
    server stands in for Azure (the Azure client over its base URL lists its models); a plain client warns."""
    import openai

    from asstctl.backends.targets import Target, make_client
    from asstctl.reconcile.plan import plan_for

    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"a.yaml": "name: A\nmodel: my-gpt4o-deployment\n"})
    azure = openai.AzureOpenAI(base_url=server.base_url, api_key=server.api_key, api_version="2024-05-01-preview")
    for client, warned in ((make_client(server.base_url, server.api_key), 1), (azure, 0)):
        warnings: list[str] = []
        with client:
            plan = plan_for(load_project(), Target("t", "the target", client), warn=warnings.append)
        assert len(plan.actions) == 1 and len(warnings) == warned, warnings
