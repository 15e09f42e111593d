"""The catalog's product schema, validated with pydantic.

A product needs ``product_id`` and ``title``; every other field is optional.
Unknown fields are ignored (and counted in the job summary) so catalogs with extra
columns still load.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
import zlib
from functools import cached_property
from html.parser import HTMLParser
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

CATEGORY_SEPARATOR = " > "
DESCRIPTION_CHARS = 2000  # the part of a description the reranker reads (and fingerprints)
CATEGORY_MAX_CHARS = 1000
# Finite floats only: JSON has no NaN, so one would be stored as null and the index could
# not read its own product back.
AttributeValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool

# Only complete references ("&amp;", "&#39;", "&#x27;"): html.unescape alone would also
# decode the legacy forms without a semicolon, turning "Black &notched" into "Black ¬ched".
_CHARACTER_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _decode_character_references(text: str) -> str:
    """Catalogs exported from web shops often carry HTML-escaped text ("Baker&#39;s", "3/4&quot;")."""
    if "&" not in text:
        return text
    return _CHARACTER_REFERENCE.sub(lambda match: html.unescape(match.group()), text)


# A tag, comment or doctype opening: "<p", "</li", "<!--". "Pipe < 2 in." or "a<3" is not markup.
_MARKUP = re.compile(r"<[A-Za-z!/]")
# Tags inside a word or phrase ("<b>Red</b>wood"); every other tag separates words ("one</li><li>two").
_INLINE_TAGS = frozenset({"a", "abbr", "b", "em", "font", "i", "mark", "small", "span", "strong", "sub", "sup", "u"})


class _MarkupText(HTMLParser):
    """The text of an HTML fragment: tags dropped, script and style bodies dropped, comments dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("script", "style")
        self.handle_startendtag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1
        self.handle_startendtag(tag, [])

    def handle_comment(self, data: str) -> None:
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _strip_markup(text: str) -> str:
    """Web-shop descriptions carry HTML ("<p>", "<li>", "<br>"); the engines and the reranker want its text."""
    if not _MARKUP.search(text):
        return text
    parser = _MarkupText()
    # Escape every "&" so the parser hands back references as written; _decode_character_references
    # decodes them afterwards, complete ones only (the parser's own decoding would take "&not" of "&notched").
    parser.feed(text.replace("&", "&amp;"))
    parser.close()
    return " ".join("".join(parser.parts).split())


# Validation context for products read back from an index the layer wrote: their text was
# cleaned when the catalog was read, and cleaning is not idempotent ("&amp;lt;b&amp;gt;" reads
# "&lt;b&gt;", which reads "<b>", which is a tag), so stored text is taken as written.
STORED = {"stored": True}


def _is_stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def split_category(path: str) -> list[str]:
    """Split "Tools > Power Tools > Drills" into its segments, rejecting empty ones."""
    segments = [segment.strip() for segment in path.split(">")]
    if any(not segment for segment in segments):
        raise ValueError(f"category path {path!r} has an empty segment; write it as 'A > B > C'")
    return segments


MAX_ID_BYTES = 512


def has_visible_character(text: str) -> bool:
    """False for text of only blanks, zero-width, format or control characters: ``str.strip``
    keeps a zero-width space, yet nobody would see anything."""
    return not all(unicodedata.category(char)[0] in "ZC" for char in text)


class Product(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    product_id: str = Field(min_length=1, max_length=256, pattern=r"^[^\s/]+$")
    title: str = Field(min_length=1, max_length=1000)
    description: str | None = Field(None, max_length=50_000)
    brand: str | None = Field(None, max_length=200)
    category: str | None = None  # at most CATEGORY_MAX_CHARS once normalised (see _normalise_category)
    # allow_inf_nan=False: NaN is refused as "not finite" before the bounds would call it "not >= 0".
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    rating: float | None = Field(None, ge=0, le=5, allow_inf_nan=False)
    rating_count: int | None = Field(None, ge=0)
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    in_stock: bool | None = None
    popularity: float | None = Field(None, ge=0, allow_inf_nan=False)

    @field_validator("product_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # Numeric ids from CSV/JSON are common; keep them as text so lookups agree.
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return str(value)
        return value

    @field_validator("product_id")
    @classmethod
    def _id_printable(cls, value: str, info: ValidationInfo) -> str:
        # Ids travel in URLs and logs: an invisible character (NUL, a zero-width space, a
        # bidi mark) would make one id look like another, or like none. Indexes written
        # before this check may hold such ids: they read back as written.
        if _is_stored(info):
            return value
        if len(value.encode("utf-8")) > MAX_ID_BYTES:  # Elasticsearch's and OpenSearch's _id limit
            raise ValueError(f"is {len(value.encode('utf-8'))} bytes in UTF-8; at most {MAX_ID_BYTES}")
        hidden = next((char for char in value if unicodedata.category(char) in ("Cc", "Cf")), None)
        if hidden is not None:
            raise ValueError(f"holds the invisible character U+{ord(hidden):04X}")
        return value

    @field_validator("description")
    @classmethod
    def _description_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Before the references are decoded: "&lt;b&gt;" is text that reads "<b>", not a tag.
        # A description that was only markup is absent.
        if not value or _is_stored(info):
            return value
        return _strip_markup(value) or None

    @field_validator("title", "description", "brand", "category")
    @classmethod
    def _decode_references(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Before the category path is split. A title must still have text once decoded;
        # an optional field that decodes to blanks is absent.
        if not value or _is_stored(info):
            return value
        decoded = _decode_character_references(value).strip()
        if decoded:
            return decoded
        if info.field_name == "title":
            raise ValueError("is blank once its HTML character references are decoded")
        return None

    @field_validator("title")
    @classmethod
    def _visible_title(cls, value: str, info: ValidationInfo) -> str:
        # After the references are decoded ("&#8203;"). A zero-width space, soft hyphen or
        # control character is not blank to str.strip(), yet the shopper would see no title.
        if not _is_stored(info) and not has_visible_character(value):
            raise ValueError("has no visible character")
        return value

    @field_validator("category")
    @classmethod
    def _normalise_category(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # The limit holds for the path as stored ("A>B" grows to "A > B"), which the
        # index validates again when it reads the product back.
        normalised = CATEGORY_SEPARATOR.join(split_category(value))
        if len(normalised) > CATEGORY_MAX_CHARS:
            raise ValueError(f"is {len(normalised)} characters written as 'A > B', more than {CATEGORY_MAX_CHARS}")
        return normalised

    @field_validator("price", "rating", "rating_count", "popularity", mode="before")
    @classmethod
    def _not_boolean(cls, value: Any) -> Any:
        # Lax numbers take true as 1; strict ones would refuse CSV's numbers, which arrive as text.
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_from_text(cls, value: Any) -> Any:
        # CSV carries attributes as a JSON object in one cell.
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON object: {exc.msg}") from exc
            except (ValueError, RecursionError) as exc:  # an integer past 4,300 digits; nesting past the stack
                raise ValueError(f"must be a JSON object: {' '.join(str(exc).split())}") from exc
        if isinstance(value, dict):  # said once here, not once per member of AttributeValue's union
            for key, item in value.items():
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(f"{key!r} is {item}; attribute numbers must be finite")
        return value

    @property
    def category_segments(self) -> list[str]:
        return split_category(self.category) if self.category else []

    @cached_property
    def text_fingerprint(self) -> int:
        """crc32 of the text the reranker analyses, once per object (products are frozen).

        Serving compares it with the index-time text table for every candidate of every
        search; the embedded engine hands out the same objects each time, so it is
        computed once per product there instead of ~200 times a search.
        """
        fields = (self.title, self.brand or "", self.category or "", (self.description or "")[:DESCRIPTION_CHARS])
        return zlib.crc32("\x1f".join(fields).encode("utf-8"))

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Product:
        # pydantic copies the instance dict, cached properties included: a changed copy must not keep them.
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.__dict__.pop("text_fingerprint", None)
        return copied

    def text_fields(self) -> dict[str, str]:
        """The searchable text of the product, by field name."""
        return {
            "title": self.title,
            "brand": self.brand or "",
            "category": self.category or "",
            "description": self.description or "",
        }
