"""Regenerate ``fineweb2_rules.json``: FineWeb-2's per-language thresholds and word splitters.

FineWeb 2 (Penedo et al. 2025, https://arxiv.org/abs/2506.20920) tuned the Gopher
repetition, Gopher quality and FineWeb rules per language and published the values
as ``configs/{iso639-3}_{script}.yml`` in https://github.com/huggingface/fineweb-2
(Apache-2.0); its ``fineweb-2-pipeline.py`` shows how each value is used. The word
splitter per language is the one DataTrove assigns in
``datatrove/assets/tokenizer_assignment.csv`` (Apache-2.0), which that pipeline uses.
This script copies both, for the languages in ``LANGUAGES``, into one JSON file that
ships with the package, so neither the repository nor DataTrove is needed at run time:

    git clone https://github.com/huggingface/fineweb-2 /tmp/fineweb-2
    .venv/bin/python -m pipeline.stages.filters.make_fineweb2_data /tmp/fineweb-2 [COMMIT]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).with_name("fineweb2_rules.json")

#: ISO 639-1 label (what the langid stage writes) -> FineWeb-2 config name
LANGUAGES = {
    "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "ru": "rus_Cyrl", "ja": "jpn_Jpan", "zh": "cmn_Hani", "ko": "kor_Hang", "ar": "arb_Arab",
    "hi": "hin_Deva", "tr": "tur_Latn", "vi": "vie_Latn", "pl": "pol_Latn", "th": "tha_Thai",
    # further languages of the demo corpus, same sources
    "nl": "nld_Latn", "sv": "swe_Latn", "cs": "ces_Latn", "id": "ind_Latn", "ca": "cat_Latn",
    "nb": "nob_Latn", "fa": "fas_Arab", "da": "dan_Latn", "el": "ell_Grek", "ro": "ron_Latn",
    "hr": "hrv_Latn",
}

#: DataTrove tokenizer class -> our splitter kind (see ``_words.py``)
_KINDS = {"SpaCyTokenizer": "spacy", "KiwiTokenizer": "kiwi", "IndicNLPTokenizer": "indicnlp",
          "ThaiTokenizer": "pythainlp"}


def _tokenizers() -> dict[str, tuple[str, str]]:
    from datatrove.utils._import_utils import ASSETS_PATH

    out: dict[str, tuple[str, str]] = {}
    with open(Path(ASSETS_PATH) / "tokenizer_assignment.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(f"{row['code_3']}_{row['script']}", (row["type"], row["tok_code"]))
    return out


def main(repo: str, commit: str | None = None) -> None:
    from importlib.metadata import version

    toks = _tokenizers()
    langs = {}
    for code, name in LANGUAGES.items():
        cfg = yaml.safe_load((Path(repo) / "configs" / f"{name}.yml").read_text(encoding="utf-8"))
        cls, tok_code = toks[name]
        kind = _KINDS[cls]
        if kind == "spacy" and tok_code == "ja":
            kind = "sudachi"  # DataTrove's spaCy "ja" is SudachiPy's core dictionary, split mode A
        langs[code] = {"fineweb2_config": name, "splitter": [kind, tok_code or code],
                       **{k: cfg[k] for k in sorted(cfg)}}
    doc = {"source": {"thresholds": "https://github.com/huggingface/fineweb-2/tree/"
                                    f"{commit or 'main'}/configs",
                      "pipeline": "https://github.com/huggingface/fineweb-2/blob/"
                                  f"{commit or 'main'}/fineweb-2-pipeline.py",
                      "splitters": f"datatrove {version('datatrove')} assets/tokenizer_assignment.csv",
                      "license": "Apache-2.0"},
           "languages": langs}
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(langs)} languages)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
