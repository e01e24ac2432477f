"""Runs with file_search on the offline engine: the file_search step, results with content on
request, and file_citation annotations whose indexes point at the marker in the reply."""

from __future__ import annotations

INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"
RETURNS = b"# Returns\n\nItems can be returned within 30 days of delivery.\nRefunds reach the card within 5 business days."
SHIPPING = b"# Shipping\n\nOrders ship within 2 business days. Express delivery takes one day."


def support_assistant(client, **tool_options):
    returns = client.files.create(file=("returns.md", RETURNS), purpose="assistants")
    shipping = client.files.create(file=("shipping.md", SHIPPING), purpose="assistants")
    store = client.vector_stores.create(file_ids=[returns.id, shipping.id])
    tool = {"type": "file_search", **({"file_search": tool_options} if tool_options else {})}
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[tool],
                                              tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    return assistant, returns, shipping


def ask(client, assistant, text, **options):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": text}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, **options)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc", **(
        {"include": [INCLUDE]} if "include" in options else {})).data
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    return run, steps, reply


def test_a_cited_answer_from_the_best_chunk(client):
    assistant, returns, _ = support_assistant(client)
    run, steps, reply = ask(client, assistant, "When do I get my refund?", include=[INCLUDE])
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    (call,) = steps[0].step_details.tool_calls
    assert call.type == "file_search"
    assert call.file_search.ranking_options.model_dump() == {"ranker": "default_2024_08_21", "score_threshold": 0.0}
    first = call.file_search.results[0]
    assert (first.file_id, first.file_name) == (returns.id, "returns.md") and 0 < first.score <= 1
    assert first.content[0].text == RETURNS.decode()
    text = reply.content[0].text
    assert "Refunds reach the card within 5 business days." in text.value
    (annotation,) = text.annotations
    assert annotation.type == "file_citation" and annotation.file_citation.file_id == returns.id
    assert text.value[annotation.start_index:annotation.end_index] == annotation.text
    assert annotation.text.startswith("【") and annotation.text.endswith("†returns.md】")


def test_markers_show_an_asstctl_uploads_own_name(client):
    """Knowledge asstctl uploaded is named `asstctl--<project>--<sha>--<name>`; end users see `<name>`."""
    internal = "asstctl--shop--8f9989d94babc5ae--returns.md"
    returns = client.files.create(file=(internal, RETURNS), purpose="assistants")
    store = client.vector_stores.create(file_ids=[returns.id])
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    _, steps, reply = ask(client, assistant, "When do I get my refund?")
    (annotation,) = reply.content[0].text.annotations
    assert annotation.text.endswith("†returns.md】") and internal not in reply.content[0].text.value
    assert annotation.file_citation.file_id == returns.id


def test_results_carry_content_only_when_asked(client):
    assistant, _, shipping = support_assistant(client, max_num_results=1)
    _, steps, reply = ask(client, assistant, "How fast is express delivery?")
    (call,) = steps[0].step_details.tool_calls
    (result,) = call.file_search.results
    assert result.file_id == shipping.id and result.content is None
    assert reply.content[0].text.annotations[0].file_citation.file_id == shipping.id


def test_no_result_means_no_citation(client):
    assistant, _, _ = support_assistant(client)
    _, steps, reply = ask(client, assistant, "How many loyalty points do I have?")
    assert steps[0].step_details.tool_calls[0].file_search.results == []
    assert "no answer" in reply.content[0].text.value and reply.content[0].text.annotations == []


def test_the_thread_store_is_searched_too(client):
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    manual = client.files.create(file=("manual.md", b"The espresso machine descales every 90 days."), purpose="assistants")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "How often does the espresso machine descale?",
                                                   "attachments": [{"file_id": manual.id, "tools": [{"type": "file_search"}]}]}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0].content[0].text
    assert "90 days" in reply.value and reply.annotations[0].file_citation.file_id == manual.id


def test_streamed_runs_announce_the_citation(client):
    assistant, returns, _ = support_assistant(client)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Can items be returned?"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        events = [event.event for event in stream]
        final = stream.get_final_messages()[0].content[0].text
    assert "thread.run.step.completed" in events and events[-1] in ("thread.run.completed", "done")
    (annotation,) = final.annotations
    assert final.value[annotation.start_index:annotation.end_index] == annotation.text
    assert annotation.file_citation.file_id == returns.id


def test_the_file_cited_expectation():
    from asstctl.testing.expectations import TurnOutcome, check

    outcome = TurnOutcome("Items can be returned within 30 days 【3:0†returns.md】", cited=["asstctl--p--0123--returns.md"])
    assert check({"file_cited": "returns.md"}, outcome) == []
    assert check({"file_cited": True}, outcome) == []
    (failure,) = check({"file_cited": ["returns.md", "shipping.md"]}, outcome)
    assert failure.reason == '"shipping.md" was not cited; cited: asstctl--p--0123--returns.md'
    named = TurnOutcome("no", cited=["asstctl--p--0123456789abcdef--returns.md"])
    assert check({"file_cited": "shipping.md"}, named)[0].reason == '"shipping.md" was not cited; cited: returns.md'
    (none,) = check({"file_cited": True}, TurnOutcome("no citation"))
    assert none.reason == "no file was cited"
