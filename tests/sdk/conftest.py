"""Fixtures: one real OTLP receiver and one fake OpenAI/Anthropic server per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import evalforge  # noqa: E402
from fake_llm import FakeLLM  # noqa: E402
from otlp_receiver import Receiver  # noqa: E402

from sdk_helpers import API_KEY  # noqa: E402


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def llm():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture
def sdk(receiver):
    """evalforge initialised against the receiver with a short export interval."""
    receiver.reset("ok")
    evalforge.init(api_key=API_KEY, endpoint=receiver.url, schedule_delay=0.05, service_name="sdk-tests")
    yield receiver
    evalforge.shutdown(timeout=1.0)
    receiver.reset("ok")
