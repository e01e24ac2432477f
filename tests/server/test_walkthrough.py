"""The Assistants documentation walkthrough (math tutor), unmodified, against `asstctl serve`.

The script is the docs' code as published; only the endpoint differs, and it comes from the
environment (OPENAI_BASE_URL / OPENAI_API_KEY), so not a line of it is changed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import openai
import pytest

from tests.conftest import make_client
from tests.serve_process import ServeProcess

WALKTHROUGH = '''
import time

from openai import OpenAI

client = OpenAI()

assistant = client.beta.assistants.create(
  name="Math Tutor",
  instructions="You are a personal math tutor. Write and run code to answer math questions.",
  tools=[{"type": "code_interpreter"}],
  model="gpt-4o",
)

thread = client.beta.threads.create()

message = client.beta.threads.messages.create(
  thread_id=thread.id,
  role="user",
  content="I need to solve the equation `3x + 11 = 14`. Can you help me?"
)

run = client.beta.threads.runs.create(
  thread_id=thread.id,
  assistant_id=assistant.id,
  instructions="Please address the user as Jane Doe. The user has a premium account."
)

while run.status in ['queued', 'in_progress', 'cancelling']:
  time.sleep(1) # Wait for 1 second
  run = client.beta.threads.runs.retrieve(
    thread_id=thread.id,
    run_id=run.id
  )

if run.status == 'completed':
  messages = client.beta.threads.messages.list(
    thread_id=thread.id
  )
  print(messages)
else:
  print(run.status)

client.beta.assistants.delete(assistant.id)
'''


def test_docs_walkthrough_runs_unmodified_against_asstctl_serve(tmp_path, contract):
    script = tmp_path / "walkthrough.py"
    script.write_text(WALKTHROUGH)
    with ServeProcess(tmp_path / "serve", "--db", ":memory:") as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-anything"}
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Jane Doe, you said: \"I need to solve the equation `3x + 11 = 14`. Can you help me?\"" in done.stdout
        assert "role='assistant'" in done.stdout and "status='completed'" in done.stdout
        assistant_id = re.search(r"assistant_id='(asst_\w+)'", done.stdout).group(1)
        with make_client(server, contract) as client, pytest.raises(openai.NotFoundError):
            client.beta.assistants.retrieve(assistant_id)  # the script deleted its assistant
        assert server.stop() == 0
