"""The prompt-style library: versioned rephrasing prompts kept as data.

Built-in styles live in ``builtin.yaml`` beside this module. Users add or
override styles without touching code, either in a YAML file of the same shape
(``style_files:`` in the rephrase stage config) or inline (``custom_styles:``).
A user style with the same name as a built-in one replaces it; give it a new
``version`` so outputs stay traceable.

>>> lib = StyleLibrary.builtin()
>>> lib.get("wikipedia").version
1
>>> "TEXT:" in lib.get("qa_pairs").render_user("Water boils at 100 C.", lang="en")
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import ConfigError
from common.config import validation_message

BUILTIN_FILE = Path(__file__).with_name("builtin.yaml")

# ISO 639-1 code -> English name, for the {lang_name} placeholder.
LANG_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay", "nb": "Norwegian", "nl": "Dutch", "nn": "Norwegian",
    "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak",
    "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "th": "Thai",
    "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "zh": "Chinese",
}


def lang_name(lang: Optional[str], default: str = "the same language as the text") -> str:
    """English name of a language code (``"zh-Hans"`` -> ``"Chinese"``); ``default`` when unknown."""
    if not lang:
        return default
    return LANG_NAMES.get(lang.split("-")[0].split("_")[0].lower(), default)


class Style(BaseModel):
    """One rephrasing prompt.

    Attributes:
        name: identifier used in configs and recorded in output rows.
        version: bump when the wording changes.
        domain: web | code | math | multilingual | any other label.
        system: optional system message.
        prompt: user message; must contain ``{text}``.
        check_language: validate that the output's language matches the source's.
        length_ratio: accepted output/input character ratio ``[min, max]``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    domain: str = "web"
    description: str = ""
    system: Optional[str] = None
    prompt: str
    check_language: bool = True
    length_ratio: tuple[float, float] = (0.1, 3.0)

    @field_validator("prompt")
    @classmethod
    def _has_text(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("prompt must contain the {text} placeholder")
        return v

    @field_validator("length_ratio")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 <= v[0] < v[1]):
            raise ValueError(f"length_ratio must be [min, max] with 0 <= min < max, got {list(v)}")
        return v

    def _fill(self, template: str, text: str, lang: Optional[str]) -> str:
        # str.replace, not str.format: documents are full of braces (code, LaTeX)
        return (
            template.replace("{lang_name}", lang_name(lang))
            .replace("{lang}", lang or "unknown")
            .replace("{text}", text)
        )

    def render_user(self, text: str, lang: Optional[str] = None) -> str:
        return self._fill(self.prompt, text, lang)

    def messages(self, text: str, lang: Optional[str] = None) -> list[dict[str, str]]:
        """Chat messages for one document or chunk."""
        msgs = []
        if self.system:
            msgs.append({"role": "system", "content": self._fill(self.system, "", lang)})
        msgs.append({"role": "user", "content": self.render_user(text, lang)})
        return msgs


class StyleLibrary:
    """Styles by name: the built-ins plus any user files and inline styles.

    Args:
        styles: styles in load order; later ones override earlier ones of the same name.
    """

    def __init__(self, styles: Iterable[Style] = ()):
        self._styles: dict[str, Style] = {}
        for s in styles:
            self._styles[s.name] = s

    @classmethod
    def builtin(cls) -> "StyleLibrary":
        return cls(load_style_file(BUILTIN_FILE))

    @classmethod
    def load(cls, files: Iterable[str | Path] = (), inline: Iterable[Style] = ()) -> "StyleLibrary":
        """Built-ins, then each file in order, then inline styles."""
        styles = list(load_style_file(BUILTIN_FILE))
        for f in files:
            styles.extend(load_style_file(f))
        styles.extend(inline)
        return cls(styles)

    def get(self, name: str) -> Style:
        try:
            return self._styles[name]
        except KeyError:
            raise ConfigError(f"unknown rephrase style {name!r}; known: {', '.join(sorted(self._styles))}") from None

    def names(self) -> list[str]:
        return sorted(self._styles)

    def __iter__(self):
        return iter(self._styles.values())

    def __len__(self) -> int:
        return len(self._styles)


def load_style_file(path: str | Path) -> list[Style]:
    """Read a YAML file with a top-level ``styles:`` list.

    Raises:
        ConfigError: naming the file, the style index and the bad key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read style file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("styles"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'styles:' list")
    out = []
    for i, item in enumerate(data["styles"]):
        try:
            out.append(Style.model_validate(item))
        except ValidationError as exc:
            name = item.get("name", "?") if isinstance(item, dict) else "?"
            errs = validation_message(exc, root="<style>")
            raise ConfigError(f"{path}: styles[{i}] ({name}): {errs}") from None
    return out


__all__ = ["LANG_NAMES", "Style", "StyleLibrary", "lang_name", "load_style_file"]
