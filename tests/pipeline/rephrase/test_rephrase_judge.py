"""Judge score parsing, table-tested on the reply shapes judges produce."""

from __future__ import annotations

import pytest

from pipeline.rephrase.judge import JUDGE_PROMPT, judge_messages, parse_score

CASES = [
    ("The extract is a tutorial.\nEducational score: 4", 4.0),
    ("Educational score: **5**", 5.0),
    ("**Educational Score:** 2", 2.0),
    ("educational score - 1", 1.0),
    ("Educational score: 0", 0.0),
    ("Score: 3/5", 3.0),
    ("I would give it a score of 2.", 2.0),
    ("Final score = three", 3.0),
    ("Total: 4 out of 5", 4.0),
    ("It earns 2 points.", 2.0),
    ("3", 3.0),
    ("  **4**. ", 4.0),
    ("2.5", 2.5),
    # the last explicit score line wins over the restated scale
    ("Scores range from 0 to 5. The first point applies.\nEducational score: 1", 1.0),
    ("Educational score: 2\nOn reflection,\nEducational score: 3", 3.0),
    # out of range or missing -> None
    ("Educational score: 7", None),
    ("Score: 10/10", None),
    ("I cannot evaluate this.", None),
    ("", None),
    ("The year 1999 had 12 months.", None),
]


@pytest.mark.parametrize("reply,score", CASES)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_prompt_embeds_the_document_verbatim():
    doc = "Some {braces} and a {text} placeholder inside the document."
    (msg,) = judge_messages(doc)
    assert doc in msg["content"] and msg["role"] == "user"
    assert JUDGE_PROMPT.count("{text}") == 1
