"""An annotator's typed answer → a canonical number, or a reason; never an exception.

Whatever text a person can type into Label Studio's number field (or the API accepts in its place) is
data: :func:`parse_answer` returns a :class:`ParsedAnswer` holding either the canonical decimal string
(:func:`pipelines.reward.canonical_number`'s form: ``"3"``, ``"2.5"``, ``"-1"``) or a reason code and a
sentence, for any input object. The rules, stated once:

* **Whitespace** (ASCII, no-break and thin spaces) around the number is ignored. Longer than
  :data:`MAX_CHARS` characters → ``result.answer_too_long``.
* **Digits of any script** (Arabic-Indic ``٣``, fullwidth ``３``, Devanagari ``३`` …) are their digit;
  the **Unicode minus** ``−`` (and fullwidth / small hyphen-minus) is ``-``; fullwidth ``＋ ． ，`` are
  ``+ . ,``.
* **Grouping**: ``1,000`` / ``12,345.5`` (commas between groups of three) and ``1 000`` / ``1'000``
  (thin or no-break space, apostrophe) are thousands. **Decimal comma**: one comma that is not such a
  grouping is the decimal point (``2,5`` → 2.5, ``0,75`` → 0.75); so is the European ``1.234,5`` (dots
  grouping thousands, one comma). Any other mix of separators → ``result.ambiguous_number``.
* **Exponents** (``1e3``) are accepted only when the number stays within :data:`MAX_DIGITS`
  significant digits and ``|value| < 10**MAX_EXPONENT``; beyond (``1e999999999``) →
  ``result.number_out_of_range``; so is anything whose canonical form would need more digits.
* ``NaN``, ``inf``, booleans, empty text, lists of other than one element, objects, words →
  ``result.non_numeric_answer`` (the verdict field says *not answerable*, not the number field).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, DecimalException
from typing import Any

NON_NUMERIC = "result.non_numeric_answer"
TOO_LONG = "result.answer_too_long"
AMBIGUOUS = "result.ambiguous_number"
OUT_OF_RANGE = "result.number_out_of_range"

MAX_CHARS = 64
MAX_DIGITS = 30
MAX_EXPONENT = 15  # answers are counts and small sums: 10**15 is far beyond any

_MINUS = {"\u2212": "-", "\ufe63": "-", "\uff0d": "-", "\u2012": "-", "\u2013": "-"}
_FULLWIDTH = {"\uff0b": "+", "\uff0e": ".", "\uff0c": ",", "\uff45": "e", "\uff25": "E"}
_SPACES = " \t\n\r\u00a0\u2009\u202f\u2007\u3000"
_GROUP_SEP = "\u00a0\u2009\u202f\u2007 '’"
_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_COMMA_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DOT_GROUPED_COMMA_DEC = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+,\d+")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


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


def _normalise(text: str) -> str:
    out = []
    for ch in text.strip(_SPACES):
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
    try:
        d = d.normalize()
    except DecimalException:
        return _refuse(OUT_OF_RANGE, f"number out of range: {_show(raw)}")
    if len(d.as_tuple().digits) > MAX_DIGITS:
        return _refuse(OUT_OF_RANGE, f"more than {MAX_DIGITS} significant digits: {_show(raw)}")
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
    stripped = text
    for sep in _GROUP_SEP:  # 1 000, 1'000: valid groups of three only
        if sep in stripped:
            if not re.fullmatch(r"[+-]?\d{1,3}(?:" + re.escape(sep) + r"\d{3})+(?:[.,]\d+)?", stripped):
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
    elif re.fullmatch(r"[+\-\d.,eE]+", stripped):
        return _refuse(AMBIGUOUS, f"separators that do not make one number: {_show(raw)}")
    else:
        return _refuse(NON_NUMERIC, f"non-numeric answer {_show(raw)}")
    try:
        d = Decimal(number)
    except DecimalException:
        return _refuse(NON_NUMERIC, f"non-numeric answer {_show(raw)}")
    return _canonical(d, raw)
