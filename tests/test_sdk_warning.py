"""The SDK warns on every Assistants call; the suite expects it, asstctl's own output must not show it."""

import warnings

import pytest


def test_sdk_assistants_calls_warn(client):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with pytest.warns(DeprecationWarning):
            client.beta.assistants.list()


def test_cli_silences_the_sdk_warning():
    from asstctl.cli import silence_sdk_deprecation

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_sdk_deprecation()
        warnings.warn("The Assistants API is deprecated in favor of the Responses API", DeprecationWarning)
        warnings.warn("deprecated", DeprecationWarning)
    assert caught == []
