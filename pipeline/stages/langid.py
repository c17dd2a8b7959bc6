"""Language identification: ``lang`` (ISO 639-1, ``und`` when unsure) and ``lang_score`` per document.

Every backend works offline with its model inside its PyPI wheel. The default,
py3langid (a naive Bayes byte n-gram model, langid.py's successor), was picked from
``benchmarks/langid_bench.py`` on the demo corpus's language labels (2,363 documents,
26 languages, first 2,000 characters): 91.5% right at 4.6 MB of text per CPU-second,
against 89.9% at 1.6 MB/s for lingua in low-accuracy mode and 84.7% at 77 MB/s for
CLD2 (``backend: cld2``, when speed matters more). Varieties some models report
(``wuu``, ``yue``, ``ary``...) are folded into their ISO 639-1 macrolanguage. Lingua
stays available (``backend: lingua``, ``low_accuracy``, ``candidates``); give
``model_path`` to use fastText ``lid.176`` instead (needs ``pip install fasttext``)."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from pipeline.errors import ConfigError
from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage


class LangIdConfig(FilterConfig):
    # Default from benchmarks/langid_bench.py on the demo corpus's 2,363 labelled documents:
    # py3langid 91.5% right at 4.6 MB/CPU-s, lingua (low accuracy) 89.9% at 1.6, cld2 84.7% at 77.
    backend: Literal["py3langid", "lingua", "cld2", "fasttext"] = Field(
        "py3langid", description="py3langid (default: most accurate on the demo corpus, 2.9x lingua's speed), "
                                 "lingua, cld2 (17x faster again, 5 points less accurate) or fasttext (model_path)")
    model_path: str | None = Field(None, description="fastText lid.176.bin/.ftz; implies backend=fasttext")
    languages: list[str] | None = Field(None, description="keep only these ISO 639-1 codes (None keeps every language)")
    min_score: float = Field(0.0, ge=0, le=1, description="below this score a document is 'und'")
    prefix_chars: int | None = Field(2000, gt=0, description="detect on this many leading chars (None: whole text)")
    low_accuracy: bool = Field(True, description="lingua's low-accuracy mode (much faster, fine above ~120 chars)")
    candidates: list[str] | None = Field(None, description="restrict lingua to these ISO 639-1 codes (faster)")
    column: str = "lang"
    score_column: str = "lang_score"


#: import name, PyPI name of the optional backends (models ship inside the wheels)
_PACKAGES = {"py3langid": ("py3langid", "py3langid"), "cld2": ("pycld2", "pycld2")}
#: varieties some models report, folded to the ISO 639-1 macrolanguage the other backends use
#: (and "no" to Bokmål, "nb", as lingua writes it and the multilingual_quality table expects)
_MACRO = {"wuu": "zh", "yue": "zh", "cmn": "zh", "ary": "ar", "arz": "ar", "zh-Hant": "zh", "no": "nb"}


@register_stage
class LangId(Filter):
    """Detect each document's language and keep the configured ones."""

    name = "langid"
    Config = LangIdConfig

    def __init__(self, config: LangIdConfig | None = None):
        super().__init__(config)
        c: LangIdConfig = self.config  # type: ignore[assignment]
        if c.model_path is not None:
            c.backend = "fasttext"
        if c.backend == "fasttext":
            if c.model_path is None:
                raise ConfigError("langid.model_path: the fastText backend needs a lid.176 model path")
            try:
                import fasttext  # noqa: F401
            except ImportError:
                raise ConfigError("langid: the fastText backend needs the fasttext package "
                                  "(pip install fasttext)") from None
        if c.backend in _PACKAGES:
            try:
                __import__(_PACKAGES[c.backend][0])
            except ImportError:
                raise ConfigError(f"langid: the {c.backend} backend needs the {_PACKAGES[c.backend][1]} package "
                                  f"(pip install {_PACKAGES[c.backend][1]})") from None
        self.signal_types = {c.column: pa.string(), c.score_column: pa.float32()}
        self._detector: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_detector"] = None  # rebuilt lazily in each worker
        return state

    def _lingua(self):
        if self._detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            c: LangIdConfig = self.config  # type: ignore[assignment]
            if c.candidates:
                codes = [getattr(IsoCode639_1, x.upper()) for x in c.candidates]
                builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
            else:
                builder = LanguageDetectorBuilder.from_all_languages()
            if c.low_accuracy:
                builder = builder.with_low_accuracy_mode()
            self._detector = builder.build()
        return self._detector

    def _fasttext(self):
        if self._detector is None:
            import fasttext

            self._detector = fasttext.load_model(self.config.model_path)  # type: ignore[attr-defined]
        return self._detector

    def detect(self, texts: list[str]) -> tuple[list[str], list[float]]:
        """Language codes and scores for a list of texts."""
        c: LangIdConfig = self.config  # type: ignore[assignment]
        if c.prefix_chars:
            texts = [t[: c.prefix_chars] for t in texts]
        langs: list[str] = []
        scores: list[float] = []
        if c.backend == "py3langid":
            if self._detector is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                self._detector = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            for t in texts:
                lang, p = self._detector.classify(t) if t.strip() else ("und", 0.0)
                langs.append(_MACRO.get(lang, lang))
                scores.append(float(p))
        elif c.backend == "cld2":
            import pycld2

            for t in texts:
                try:
                    ok, _, details = pycld2.detect(t)
                except pycld2.error:  # lone surrogates and other invalid UTF-8
                    ok, details = False, ()
                if ok and details and details[0][1] != "un":
                    code = details[0][1].split("-")[0]
                    langs.append(_MACRO.get(code, code))
                    scores.append(details[0][2] / 100.0)
                else:
                    langs.append("und")
                    scores.append(0.0)
        elif c.backend == "fasttext":
            model = self._fasttext()
            labels, probs = model.predict([t.replace("\n", " ") for t in texts], k=1)
            for lab, p in zip(labels, probs):
                langs.append(lab[0].removeprefix("__label__") if lab else "und")
                scores.append(float(p[0]) if len(p) else 0.0)
        else:
            det = self._lingua()
            for values in det.compute_language_confidence_values_in_parallel(texts):
                if values and values[0].value > 0:
                    langs.append(values[0].language.iso_code_639_1.name.lower())
                    scores.append(float(values[0].value))
                else:
                    langs.append("und")
                    scores.append(0.0)
        langs = [lang if s >= c.min_score else "und" for lang, s in zip(langs, scores)]
        return langs, scores

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        c: LangIdConfig = self.config  # type: ignore[assignment]
        langs, scores = self.detect(table.column("text").to_pylist())
        allowed = set(c.languages) if c.languages is not None else None
        reasons = [None if allowed is None or lang in allowed else f"lang_{lang}" for lang in langs]
        return FilterOutput(reasons, {c.column: langs, c.score_column: scores})
