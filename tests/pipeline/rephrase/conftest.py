"""Fixtures of the rephrase tests: a tiny random model on disk, and loopback OpenAI-compatible servers.

Run: ``.venv/bin/python -m pytest tests/pipeline/rephrase -q``
"""

from __future__ import annotations

import re

import pytest

from pipeline.rephrase.engines.base import FINISH_STOP, Engine, Generation


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer random Llama with a trained byte-level BPE tokenizer (built once per session)."""
    from pipeline.rephrase.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"), context_length=512)


class ScriptedEngine(Engine):
    """A deterministic stand-in for the *model* behind a real HTTP server.

    - rephrase prompts ("TEXT:\\n...\\n\\nREWRITTEN"): answers the chunk's text in upper case, or a refusal
      when the chunk contains "REFUSE", or a loop when it contains "LOOP";
    - judge prompts ("<extract>...</extract>"): "Educational score: N" where N is the digit after "edu=" in the
      extract (no digit: an unparseable reply).
    """

    backend = "scripted"

    def __init__(self, tokenizer=None):
        super().__init__(None)
        self._tok = tokenizer

    @property
    def tokenizer(self):
        return self._tok

    @property
    def model_name(self) -> str:
        return "scripted"

    def _answer(self, prompt: str) -> str:
        m = re.search(r"<extract>\n(.*)\n</extract>", prompt, re.S)
        if m:
            d = re.search(r"edu=(\d)", m.group(1))
            return f"The extract is fine.\nEducational score: {d.group(1)}" if d else "I like it."
        m = re.search(r"(?:TEXT|CODE|CONTENT):\n(.*)\n\n[A-Z ()\-]+:", prompt, re.S)
        body = m.group(1) if m else prompt
        if "REFUSE" in body:
            return "I'm sorry, but I can't help with rewriting this."
        if "LOOP" in body:
            return body + " and again" * 40
        return body.upper()

    def _generate(self, prompts, sampling, seeds):
        out = []
        for p in prompts:
            text = self._answer(self.render(p))
            out.append(Generation(text=text, finish_reason=FINISH_STOP, prompt_tokens=len(self.render(p)) // 4, completion_tokens=len(text) // 4))
        return out


@pytest.fixture
def scripted_server():
    """Factory: a real HTTP server on 127.0.0.1 serving :class:`ScriptedEngine`; stopped after the test."""
    from pipeline.rephrase.serve import OpenAICompatServer

    servers = []

    def make(engine=None, **kw):
        srv = OpenAICompatServer(engine or ScriptedEngine(), **kw).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.stop()


def _crash_once(stage, marker):
    """``stage`` as a test-only subclass whose first batch kills the worker process that runs it.

    The first worker to process a batch creates ``marker`` (``O_EXCL``: exactly one wins) and
    exits at once, as a crashed engine would; every later batch runs normally. The class is
    made inside this function so that Ray's cloudpickle ships it by value (test modules are
    not importable on the workers); production configs cannot name it.
    """
    base = type(stage)

    class CrashOnce(base):
        def process(self, table):
            import logging
            import os

            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().process(table)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            logging.getLogger(__name__).error("fault injection: killing worker process %d", os.getpid())
            os._exit(1)

    CrashOnce.__qualname__ = CrashOnce.__name__ = f"CrashOnce{base.__name__}"
    return CrashOnce(stage.config)


@pytest.fixture
def crash_once():
    """Factory ``crash_once(stage, marker_path)``: the stage, killing its worker on the first batch."""
    return lambda stage, marker: _crash_once(stage, str(marker))
