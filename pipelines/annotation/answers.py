"""An annotator's typed answer → a canonical number, or a reason; never an exception.

Whatever text a person can type into Label Studio's number field (or the API accepts in its place) is
data: :func:`parse_answer` returns a :class:`ParsedAnswer` holding either the canonical decimal string
(:func:`pipelines.reward.canonical_number`'s form: ``"3"``, ``"2.5"``, ``"-1"``) or a reason code and a
sentence, for any input object. The rules, stated once:

* **Length first**: text longer than :data:`MAX_CHARS` characters → ``result.answer_too_long`` (it is
  never parsed). Then whitespace of any kind (ASCII, no-break, thin, en/em, ideographic spaces) and
  invisible format characters (right-to-left marks, zero-width space, BOM) around the number are ignored.
* **Digits of any script** (Arabic-Indic ``٣``, fullwidth ``３``, Devanagari ``३`` …) are their digit;
  the **Unicode minus** ``−`` U+2212, small and fullwidth hyphen-minus U+FE63 / U+FF0D, and the figure
  and en dashes U+2012 / U+2013 (word processors turn ``-3`` into ``–3``) are ``-``; fullwidth
  ``＋ ． ， ｅ`` are ``+ . , e``.
* **Thousands grouping**: a first group of 1–3 digits not starting with ``0``, then groups of exactly
  three after a separator: commas (``1,000`` → 1000, ``12,345.5`` → 12345.5), a space of any kind or an
  apostrophe (``1 000``, ``1'000``, ``1 000,5`` → 1000.5), or dots when a decimal comma follows
  (European ``1.234,5`` → 1234.5).
* **Decimal comma**: a single comma that is not such a grouping is the decimal point: ``2,5`` → 2.5,
  ``0,75`` → 0.75, ``0,500`` → 0.5, ``1,5000`` → 1.5. So one comma followed by exactly three digits
  after a non-zero lead is *thousands* (``1,500`` → 1500, never 1.5). A dot alone is always the decimal
  point (``1.000`` → 1). Any other mix or repetition of separators (``1,2,3``, ``1.2.3``, ``1,2.3``,
  ``1 00``, ``0.500,5``) → ``result.ambiguous_number``.
* **Exponents** (``1e3``, ``2.5E-2``) are accepted, but like every answer the number must have at most
  :data:`MAX_DIGITS` significant digits and lie in ``10**-MAX_EXPONENT <= |x| < 10**MAX_EXPONENT`` (or
  be 0); otherwise → ``result.number_out_of_range`` (``1e999999999`` is refused, never expanded).
* ``NaN``, ``inf``, ``Infinity``, booleans, ``None``, empty text, lists of other than one element,
  objects, words → ``result.non_numeric_answer`` (the verdict field says *not answerable*, not the
  number field).

An accepted value is a fixed point: ``parse_answer(v).value == v`` and ``canonical_number(v) == v``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Context, Decimal, DecimalException
from typing import Any

NON_NUMERIC = "result.non_numeric_answer"
TOO_LONG = "result.answer_too_long"
AMBIGUOUS = "result.ambiguous_number"
OUT_OF_RANGE = "result.number_out_of_range"

MAX_CHARS = 64
MAX_DIGITS = 28  # the default decimal precision: canonical_number keeps every digit of an accepted answer
MAX_EXPONENT = 15  # answers are counts and small sums: 10**15 is far beyond any

_MINUS = {"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u2012": "-", "\u2013": "-"}
_FULLWIDTH = {"\uff0b": "+", "\uff0e": ".", "\uff0c": ",", "\uff45": "e", "\uff25": "E"}
_GROUP_SEP = "'\u2019"  # apostrophes; any space groups too
_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LEAD = r"[+-]?[1-9]\d{0,2}"  # the first group of a thousands grouping
_COMMA_GROUPED = re.compile(_LEAD + r"(?:,\d{3})+(?:\.\d+)?")
_DOT_GROUPED_COMMA_DEC = re.compile(_LEAD + r"(?:\.\d{3})+,\d+")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
_NUMBER_CHARS = re.compile(r"[0-9+\-.,eE'\u2019\s]+")  # anything else (a letter, a symbol) is not a number


@dataclass(frozen=True)
class ParsedAnswer:
    """``value`` (canonical decimal string) or ``code`` + ``detail`` (why it is not a number)."""

    value: str | None
    code: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def _refuse(code: str, detail: str) -> ParsedAnswer:
    return ParsedAnswer(None, code, detail)


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_blank(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def _normalise(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_blank(text[start]):
        start += 1
    while end > start and _is_blank(text[end - 1]):
        end -= 1
    out = []
    for ch in text[start:end]:
        if ch in _MINUS:
            out.append(_MINUS[ch])
        elif ch in _FULLWIDTH:
            out.append(_FULLWIDTH[ch])
        elif ch.isdigit() and not ch.isascii():
            digit = unicodedata.decimal(ch, None)
            out.append(str(digit) if digit is not None else ch)
        else:
            out.append(ch)
    return "".join(out)


def _canonical(d: Decimal, raw: Any) -> ParsedAnswer:
    if not d.is_finite():
        return _refuse(NON_NUMERIC, f"not a finite number: {_show(raw)}")
    if d == 0:
        return ParsedAnswer("0")
    if d.adjusted() >= MAX_EXPONENT or d.adjusted() < -MAX_EXPONENT:
        return _refuse(OUT_OF_RANGE, f"number out of range (|x| must lie in 1e-{MAX_EXPONENT}..1e{MAX_EXPONENT}): "
                                     f"{_show(raw)}")
    if len("".join(map(str, d.as_tuple().digits)).rstrip("0")) > MAX_DIGITS:  # checked before any rounding
        return _refuse(OUT_OF_RANGE, f"more than {MAX_DIGITS} significant digits: {_show(raw)}")
    try:
        d = d.normalize(Context(prec=MAX_DIGITS))  # exact: at most MAX_DIGITS digits, exponent bounded above
    except DecimalException:
        return _refuse(OUT_OF_RANGE, f"number out of range: {_show(raw)}")
    text = format(d, "f")
    return ParsedAnswer(text.rstrip("0").rstrip(".") if "." in text else text)


def parse_answer(raw: Any) -> ParsedAnswer:
    """See the module rules. Never raises."""
    try:
        return _parse(raw)
    except Exception as err:  # noqa: BLE001 - a person's text must never stop the pipeline
        return _refuse(NON_NUMERIC, f"not a number ({type(err).__name__}): {_show(raw)}")


def _parse(raw: Any) -> ParsedAnswer:
    if isinstance(raw, list):
        if len(raw) != 1:
            return _refuse(NON_NUMERIC, f"expected one number, got {len(raw)} values")
        raw = raw[0]
    if raw is None or isinstance(raw, bool):
        return _refuse(NON_NUMERIC, f"not a number: {_show(raw)}")
    if isinstance(raw, int):
        if abs(raw) >= 10**MAX_EXPONENT:
            return _refuse(OUT_OF_RANGE, f"number out of range: {_show(raw)}")
        return ParsedAnswer(str(raw))
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return _refuse(NON_NUMERIC, f"not a finite number: {_show(raw)}")
        return _canonical(Decimal(repr(raw)), raw)
    if not isinstance(raw, str):
        return _refuse(NON_NUMERIC, f"not a number: a {type(raw).__name__}")
    if len(raw) > MAX_CHARS:
        return _refuse(TOO_LONG, f"answer of {len(raw)} characters (at most {MAX_CHARS})")
    text = _normalise(raw)
    if not text:
        return _refuse(NON_NUMERIC, "empty answer")
    if not _NUMBER_CHARS.fullmatch(text) or not re.search(r"[0-9]", text):
        return _refuse(NON_NUMERIC, f"non-numeric answer {_show(raw)}")
    stripped = text
    seps = {ch for ch in text if ch.isspace() or ch in _GROUP_SEP}
    if len(seps) > 1:
        return _refuse(AMBIGUOUS, f"not one number: {_show(raw)}")
    for sep in seps:  # 1 000, 1'000: valid groups of three only
        if not re.fullmatch(_LEAD + r"(?:" + re.escape(sep) + r"\d{3})+(?:[.,]\d+)?", stripped):
            return _refuse(AMBIGUOUS, f"not one number: {_show(raw)}")
        stripped = stripped.replace(sep, "")
    if _PLAIN.fullmatch(stripped):
        number = stripped
    elif _COMMA_GROUPED.fullmatch(stripped):
        number = stripped.replace(",", "")
    elif _DOT_GROUPED_COMMA_DEC.fullmatch(stripped):
        number = stripped.replace(".", "").replace(",", ".")
    elif _DECIMAL_COMMA.fullmatch(stripped):
        number = stripped.replace(",", ".")
    else:
        return _refuse(AMBIGUOUS, f"separators that do not make one number: {_show(raw)}")
    try:
        d = Decimal(number)
    except DecimalException:  # well-formed, so only an exponent beyond what decimal can hold gets here
        return _refuse(OUT_OF_RANGE, f"number out of range: {_show(raw)}")
    return _canonical(d, raw)
