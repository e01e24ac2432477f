"""The code_interpreter tool on a real server: the step's tool call, images and /mnt/data files as
``assistants_output`` files downloadable through the SDK, the missing-bwrap error, hostile file names
(refused at upload, sanitized when copied into a session), the quotas on output files."""

from __future__ import annotations

import httpx2
import openai
import pytest

from asstctl.server.embedded import start_server
from asstctl.server.sandbox import SandboxConfig
from asstctl.server.tools.base import ToolError
from tests.conftest import make_client
from tests.contract import validator_for
from tests.sandbox.conftest import ROOMY_CPU
from tests.sandbox.tool_driver import ToolDriver


@pytest.fixture
def served():
    with start_server(":memory:", sandbox=SandboxConfig(**ROOMY_CPU)) as server:
        driver = ToolDriver(server)
        yield server, driver
        driver.close()


@pytest.fixture
def sdk(served, contract):
    client = make_client(served[0], contract)
    yield client
    client.close()


def test_the_call_has_the_apis_shape_and_the_model_reads_the_logs(served, sdk):
    _, tool = served
    thread = sdk.beta.threads.create()
    outcome = tool.call("print('hello')\n6 * 7", thread.id)
    assert outcome.call["type"] == "code_interpreter"
    assert outcome.call["code_interpreter"] == {"input": "print('hello')\n6 * 7",
                                                "outputs": [{"type": "logs", "logs": "hello\n42\n"}]}
    validator_for("#/components/schemas/RunStepDetailsToolCallsCodeObject").validate(outcome.call)
    assert outcome.output == "hello\n42\n"
    delta = {"index": 0, "id": outcome.call["id"], "type": "code_interpreter", **tool.progress[-1]}  # as the executor emits it
    validator_for("#/components/schemas/RunStepDeltaStepDetailsToolCallsCodeObject").validate(delta)
    assert tool.progress == [{"code_interpreter": {"input": "print('hello')\n6 * 7"}},
                             {"code_interpreter": {"outputs": [{"index": 0, "type": "logs", "logs": "hello\n42\n"}]}}]


def test_a_figure_becomes_an_assistants_output_png(served, sdk):
    _, tool = served
    thread = sdk.beta.threads.create()
    outcome = tool.call("import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])\nplt.show()", thread.id)
    (file_id,) = outcome.image_file_ids
    assert outcome.call["code_interpreter"]["outputs"] == [{"type": "image", "image": {"file_id": file_id}}]
    validator_for("#/components/schemas/RunStepDetailsToolCallsCodeObject").validate(outcome.call)
    assert sdk.files.retrieve(file_id).purpose == "assistants_output"
    assert sdk.files.content(file_id).read().startswith(b"\x89PNG\r\n\x1a\n")


def test_thread_and_assistant_files_are_in_mnt_data_and_written_files_download(served, sdk):
    server, tool = served
    prices = sdk.files.create(file=("prices.csv", b"item,price\npen,2\nbook,12\n"), purpose="assistants")
    rates = sdk.files.create(file=("rates.txt", b"1.1"), purpose="assistants")
    attached = sdk.files.create(file=("note.txt", b"from a message"), purpose="assistants")
    lost = sdk.files.create(file=("lost.txt", b"gone"), purpose="assistants")
    server.state.store.delete_blob(lost.id)  # e.g. a failed restore: the object without its bytes
    assistant = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}],
                                           tool_resources={"code_interpreter": {"file_ids": [rates.id]}})
    thread = sdk.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": [prices.id, lost.id]}})
    sdk.beta.threads.messages.create(thread.id, role="user", content="see the note",
                                     attachments=[{"file_id": attached.id, "tools": [{"type": "code_interpreter"}]}])
    code = ("import pandas as pd\ndf = pd.read_csv('/mnt/data/prices.csv')\n"
            "rate = float(open('/mnt/data/rates.txt').read())\n"
            "(df.price * rate).round(2).to_csv('/mnt/data/converted.csv', index=False)\n"
            "print(open('/mnt/data/note.txt').read(), df.price.sum())")
    outcome = tool.call(code, thread.id, assistant.id)
    assert outcome.output.startswith("from a message 14\n") and "sandbox:/mnt/data/converted.csv" in outcome.output
    assert f"[not copied into /mnt/data: lost.txt (the stored bytes of {lost.id} are missing)]" in outcome.output
    ((path, file_id),) = outcome.written_files
    assert path == "/mnt/data/converted.csv"
    assert sdk.files.retrieve(file_id).purpose == "assistants_output"
    assert sdk.files.content(file_id).read() == b"price\n2.2\n13.2\n"
    assert tool.call("print(open('/mnt/data/converted.csv').read())", thread.id).written_files == []


def test_without_bwrap_the_run_cannot_go_on_and_the_error_says_how_to_install_it(tmp_path):
    config = SandboxConfig(bwrap=str(tmp_path / "missing-bwrap"))
    with start_server(":memory:", sandbox=config) as server:
        tool = ToolDriver(server)
        try:
            with pytest.raises(ToolError) as raised:
                tool.call("print(1)", "thread_x")
        finally:
            tool.close()
    assert "apt-get install bubblewrap" in raised.value.message
    assert "--unsafe-code-interpreter" in raised.value.message


def test_a_call_without_code_is_an_answer_not_a_failure(served):
    _, tool = served
    ctx_outcome = tool.loop.run_until_complete(_bad_call(tool))
    assert ctx_outcome.output.startswith("Error: call python with")


async def _bad_call(tool):
    from asstctl.server.tools.base import ToolContext

    ctx = ToolContext(state=tool.server.state, run={"id": "run_1", "thread_id": "thread_1"}, assistant={},
                      thread={"id": "thread_1"}, call_id="call_1", tool={"type": "code_interpreter"})
    return await tool.tool.run(ctx, {"source": "print(1)"})


def test_the_definition_offered_to_the_model(served):
    _, tool = served
    definition = tool.tool.definition({"type": "code_interpreter"})
    assert definition["type"] == "function" and definition["function"]["name"] == "python"
    assert definition["function"]["parameters"]["required"] == ["code"]


HOSTILE = {"../etc/passwd": "contains '/'", "..": "is '..'", ".": "is '.'"}  # through the SDK
RAW = {b"a\x00b.txt": "contains a NUL byte or another control character (U+0000)",  # the SDK would %-escape these
       b"bell\x07.txt": "contains a NUL byte or another control character (U+0007)", b"caf\xe9.txt": "is not valid UTF-8",
       "next\x85line.txt".encode(): "contains a NUL byte or another control character (U+0085)",
       "invoice\u202etxt.exe".encode(): "contains a bidirectional control character (U+202E), which can make a name "
                                        "read as another",
       "a\u2066b.txt".encode(): "contains a bidirectional control character (U+2066)",
       b"b" * 252 + b".csv": "is 256 bytes long in UTF-8, over the limit of 255 bytes",
       b"c" * 8000: None}  # over python-multipart's cap on a header line: said so, not "does not follow its boundary"


def test_hostile_filenames_are_refused_at_upload_naming_the_rule(served, sdk):
    for name, rule in HOSTILE.items():
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.files.create(file=(name, b"x"), purpose="assistants")
        assert f"its filename {rule}" in refused.value.message and refused.value.param == "file"
    for name, rule in RAW.items():
        body = (b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
                b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name + b"\"\r\n\r\nx\r\n--b--\r\n")
        raw = httpx2.post(f"{served[0].base_url}/files", content=body, headers={
            "Authorization": f"Bearer {served[0].api_key}", "Content-Type": "multipart/form-data; boundary=b"})
        expected = f"its filename {rule}" if rule else "a part's header line is over the limit of 4224 bytes (a " \
                                                       "filename may have at most 255 bytes)"
        assert raw.status_code == 400 and expected in raw.json()["error"]["message"], raw.text
    assert [f.filename for f in sdk.files.list()] == []  # nothing stored
    assert len(sdk.files.create(file=("d" * 251 + ".csv", b"x"), purpose="assistants").filename) == 255
    assert sdk.files.create(file=("café ok.txt", b"x"), purpose="assistants").filename == "café ok.txt"


def test_a_stored_hostile_name_is_sanitized_when_copied_into_the_session(served, sdk):
    server, tool = served
    ids = []
    for name in ("../../etc/evil\x00.txt", "..", "tab\tname.csv", "b" * 300 + ".csv"):  # stored before the upload rules
        file = sdk.files.create(file=("placeholder.txt", name.encode("utf-8", "replace")), purpose="assistants")
        server.state.store.update("file", file.id, lambda body, name=name: body.update(filename=name))
        ids.append(file.id)
    thread = sdk.beta.threads.create(tool_resources={"code_interpreter": {"file_ids": ids}})
    outcome = tool.call("import os; print(sorted(os.listdir('/mnt/data')))", thread.id)
    assert outcome.output == str(sorted(["evil_.txt", ids[1], "tab_name.csv", "b" * 196 + ".csv"])) + "\n"  # cut, not its extension
    # On an assistant, the file reaches every new thread's session: sanitized there too, and the call runs.
    assistant = sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}],
                                           tool_resources={"code_interpreter": {"file_ids": ids[:1]}})
    outcome = tool.call("import os; print(os.listdir('/mnt/data'), open('/mnt/data/evil_.txt').read())",
                        sdk.beta.threads.create().id, assistant.id)
    assert outcome.output == "['evil_.txt'] ../../etc/evil\x00.txt\n", outcome.output


def test_output_files_have_a_quota_per_run_and_per_thread_kept_in_the_store(tmp_path):
    limits = {**ROOMY_CPU, "run_output_mb": 1, "thread_output_mb": 2}
    write = "for i in range(3):\n    open(f'/mnt/data/part{{i}}-{tag}.bin', 'wb').write(b'x' * 500_000)"
    db = str(tmp_path / "quota.sqlite3")
    with start_server(db, sandbox=SandboxConfig(**limits)) as server:
        tool = ToolDriver(server)
        try:
            first = tool.call(write.format(tag="a"), "thread_q", run_id="run_1")
            assert [path for path, _ in first.written_files] == ["/mnt/data/part0-a.bin", "/mnt/data/part1-a.bin"]
            assert "[file not returned: /mnt/data/part2-a.bin: the quota of 1 MB of output files per run is used up (--code-run-output-mb)]" \
                in first.output
            second = tool.call(write.format(tag="b"), "thread_q", run_id="run_2")
            assert len(second.written_files) == 2
            assert len(tool.call(write.format(tag="d"), "thread_other", run_id="run_4").written_files) == 2
        finally:
            tool.close()
    with start_server(db, sandbox=SandboxConfig(**limits)) as server:  # a restart (or another replica)
        tool = ToolDriver(server)
        try:
            third = tool.call(write.format(tag="c"), "thread_q", run_id="run_3")
            assert third.written_files == [] and "the quota of 2 MB of output files per thread is used up (--code-thread-output-mb)" in third.output
        finally:
            tool.close()


def test_an_output_file_is_stored_with_its_bytes_or_not_at_all(served):
    server, tool = served
    store = server.state.store
    blobs = lambda: store._fetch("SELECT count(*) FROM blob_index")[0][0]  # noqa: E731
    before = blobs()
    with pytest.raises(ValueError):  # a name the database cannot hold (a lone surrogate): neither is written
        tool.tool._store("/mnt/data/caf\udce9.csv", b"bytes")
    assert blobs() == before and not store.all("file")
    file_id = tool.tool._store("/mnt/data/ok.csv", b"bytes")
    assert blobs() == before + 1 and [f["id"] for f in store.all("file")] == [file_id]
