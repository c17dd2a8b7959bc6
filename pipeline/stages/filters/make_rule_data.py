"""Regenerate ``rule_data.json``: the character sets and word-splitting rules the reference filters use.

DataTrove's Gopher, FineWeb and C4 filters split words (and C4 sentences) with
``spacy.blank("en")`` when the language is English (their default), and classify
characters with DataTrove's own ``PUNCTUATION_SET`` and ``TERMINAL_PUNCTUATION``.
``_text.split_words`` re-implements that tokenizer's algorithm in plain Python; this
script exports the data it runs on, so neither spaCy nor DataTrove is needed at run time:

* ``spacy_en``: prefix, suffix and infix patterns, the URL pattern, the special cases
  (exceptions such as ``don't`` -> ``do`` + ``n't``) and the sentencizer's punctuation
  (spaCy, MIT License, Explosion AI).
* ``datatrove``: ``PUNCTUATION_SET`` and ``TERMINAL_PUNCTUATION`` from
  ``datatrove.utils.text`` (Apache-2.0, Hugging Face).

    .venv/bin/python -m pipeline.stages.filters.make_rule_data   # needs the bench extra
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("rule_data.json")


def main() -> None:
    from importlib.metadata import version

    import spacy
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
    from spacy.attrs import ORTH
    from spacy.pipeline.sentencizer import Sentencizer

    nlp = spacy.blank("en")
    tok = nlp.tokenizer
    assert tok.token_match is None, "the English tokenizer has no token_match; split_words assumes so"
    assert tok.faster_heuristics, "split_words assumes faster_heuristics (spaCy's default)"
    data = {
        "spacy_en": {
            "source": f"spacy {spacy.__version__}, spacy.blank('en').tokenizer (MIT License, Explosion AI)",
            "prefix": tok.prefix_search.__self__.pattern,
            "suffix": tok.suffix_search.__self__.pattern,
            "infix": tok.infix_finditer.__self__.pattern,
            "url": tok.url_match.__self__.pattern,
            "special_cases": {k: [piece[ORTH] for piece in v] for k, v in sorted(tok.rules.items())},
            "sentence_punct": sorted(Sentencizer.default_punct_chars),
        },
        "datatrove": {
            "source": f"datatrove {version('datatrove')}, datatrove.utils.text (Apache-2.0, Hugging Face)",
            "punctuation": "".join(sorted(PUNCTUATION_SET)),
            "terminal_punctuation": "".join(sorted(TERMINAL_PUNCTUATION)),
        },
    }
    OUT.write_text(json.dumps(data, ensure_ascii=True, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(data['spacy_en']['special_cases'])} special cases)")


if __name__ == "__main__":
    main()
