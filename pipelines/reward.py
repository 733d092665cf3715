"""The verifiable reward of a HopChain question: the number a completion gives, against the released answer.

Standard library only (no Airflow, no torch, no pyarrow): trainers import it as it is, from the platform
or from the copy each release carries (``pipelines/reward.py`` in the registry at that tag; the dataset
card and every row's ``extra_info.reward_version`` name :data:`REWARD_VERSION`). The difficulty solver
of the question stage uses the same functions, so a question's measured pass rate and the trainer's
reward agree.

The rules (``hopchain-reward-2``), stated once (``docs/releases.md`` repeats them):

1. **Reasoning is not an answer.** Text inside a reasoning block is ignored: everything up to the last
   ``</think>`` (``</thinking>``, ``</reasoning>``), and everything from an unclosed ``<think>`` on.
   A completion cut off inside its reasoning has no answer.
2. **The answer is the last explicit final answer** in what remains: the last of ``Answer: n`` (also
   ``Final answer: n``, ``**Answer:** n``, ``Answer = n``, ``Answer:`` with ``n`` on the next line),
   ``\\boxed{n}``, and "the answer is n" (``answer is|would be|should be`` directly followed by a
   number). The final answer runs to the end of its line and stops at the first sentence end (``. ! ?
   ;`` before a space); ``\\boxed{…}`` is its braces. One longer than 1,000 characters is no answer.
   The last explicit answer decides even when it holds no number (``Answer: unclear`` scores 0).
3. **No explicit answer scores 0**, unless the whole completion (outside reasoning) is only a number
   (``4``, ``4.``, ``**4**``, ``$4$``, ``four``). There is no fallback to "the last number in the
   text": a cut-off or rambling completion never scores by accident.
4. **One number.** The final answer must contain exactly one number (repeats of the same value are
   fine: ``3 (three)``). Two different numbers score 0 (``3 or 4``, ``3-4``, ``3 (2 red + 1 blue)``).
   An equation counts by its result: with ``=`` in the answer only the text after the last ``=`` is
   read (``2 + 1 = 3`` → 3, ``\\boxed{4 \\times 3 = 12}`` → 12).
5. **Numbers** are read as people write them: signs ``-`` ``+`` and the Unicode minus ``−``;
   ``1,000`` and ``1 000`` (no-break or thin space) thousands; ``2.5``, ``.5``, and the decimal comma
   ``2,5`` (one comma not followed by exactly three digits; ``1,500`` is thousands, as in the
   annotators' rule, :mod:`pipelines.annotation.answers`) and ``1.234,5``; scientific notation
   ``1.2e3``, ``1.2 × 10^3``, ``1.2\\times10^{3}``; powers ``10^3``; fractions ``3/4`` and
   ``\\frac{3}{4}`` (compared exactly, never rounded); ``50%`` is 50; units after a number are ignored
   (``3 cups``, ``3cm``); digits glued after letters are not numbers (``x2``, ``H2O``, ``m^2``'s 2).
   **Number words** of any size: ``four``, ``twenty-one``, ``one hundred and five``, ``three thousand
   two hundred``, ``2 million``, ``minus three``, ``three point five``, ``none`` (0); ``one`` after
   ``the|this|that|each|which|every|any|another|a|an`` is a pronoun, not 1.
6. **Equality** is exact on values (``3`` = ``3.0`` = ``+3`` = ``3.00``; ``0.75`` = ``3/4``); the
   released answer is a canonical decimal string (:func:`canonical_number`). 1.0 when equal, else 0.0.
7. **Never an exception, linear time**: any input (``None``, bytes, a 1 MB degenerate generation)
   scores 0.0 or 1.0; every pattern is bounded, so a 1 MB completion takes milliseconds
   (``bench/reward.py``).

Why the standard library and not a parser package (judged by ``bench/reward.py`` on the 82 completions
of ``tests/support/reward_cases.py``; this module: 82 right, ~30 us a row):

* HF ``math-verify`` 0.9 (with its own ``verify``): 47 right. It reads inside ``<think>`` (a completion cut
  off in its reasoning scores its draft), falls back to a number of a text without a final answer, takes
  the first of ``3 or 4``, misses number words and the Unicode minus, reads ``1.2 × 10^3`` as 10; ~2 ms a
  row; it needs sympy and antlr4-python3-runtime 4.13, which conflicts with the 4.9 that hydra-core and
  omegaconf (verl's configuration) pin; its timeout is ``signal.alarm``, main thread only.
* ``word2number`` 1.1: raises on 67 rows (any text without number words), sums ``one two`` to 3, reads
  ``2 million`` as 1,000,000 and ``minus three`` as 3.
* ``number-parser`` 0.3: reads a string only when all of it is a number (18 right); no release since 2023.

And every release carries this file: it must run with nothing installed, in verl's and TRL's workers alike.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections.abc import Sequence
from decimal import Context, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

__all__ = ["ANSWER_FORMAT", "MIN_VERSIONS", "REWARD_VERSION", "canonical_number", "check_versions",
           "compute_score", "extract_answer", "final_value", "score", "trl_reward"]

#: Named on the dataset card and in every row's ``extra_info``; changes whenever a rule above changes.
REWARD_VERSION = "hopchain-reward-2"

#: What the released prompts ask of the model, after the question (the rule :func:`extract_answer` reads).
ANSWER_FORMAT = "Think it through, then give the number on the last line as: Answer: <number>"

#: The oldest trainer libraries that read a release correctly: TRL before 0.24 ignores the ``images``
#: column (it trains on the text alone, silently); datasets before 3.0 lacks the features the rows declare;
#: verl's documented command (``reward.custom_reward_function``, rollout and micro-batch keys) is verl 0.9's.
MIN_VERSIONS: dict[str, tuple[int, ...]] = {"trl": (0, 24), "datasets": (3, 0), "verl": (0, 9)}

_MAX_EXPONENT = 100  # |value| beyond 1e100 is no answer to any question (and would not fit a string)
_MAX_ANSWER = 1000  # characters of one final answer
_MAX_SCAN = 4096  # characters searched after a marker for a \boxed{…} close or an "Answer:" on the next line

# -- numbers written in digits ----------------------------------------------------------------------
_SIGNS = "+-\u2212\u2013\ufe63\uff0d"
_SIGN = "[+\\-\u2212\u2013\ufe63\uff0d]"  # the same, as a character class
_SEP = ",.\u00a0\u202f\u2009"  # thousands / decimal separators inside one number (no-break, thin spaces)
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w)\]}])" + _SIGN + r"\s?)?"
    r"(?<![^\W\d_])"  # not glued to a preceding letter (x2, H2O, m^2's 2 is handled by the power below)
    r"(?P<blob>(?:\d|\.(?=\d))(?:\d|[" + _SEP + r"](?=\d))*)"
    r"(?:[eE](?P<exp>" + _SIGN + r"?\d{1,6})(?!\d))?"
    r"(?:\s{0,3}(?:×|x|\*|\\times|\\cdot|·)\s{0,3}10\s{0,3}(?:\^|\*\*)\s{0,3}\{?(?P<sci>" + _SIGN + r"?\d{1,4})\}?)?"
    r"(?:\s{0,3}(?:\^|\*\*)\s{0,3}\{?(?P<pow>" + _SIGN + r"?\d{1,4})\}?)?"
    r"(?:\s{0,3}/\s{0,3}(?P<den>\d{1,40}(?:\.\d{1,40})?)(?!\d|\.\d))?"
)
_EXPONENT_AFTER_LETTER = re.compile(r"(?<=[^\W\d_])\s?(?:\^|\*\*)\s?\{?" + _SIGN + r"?\d{1,4}\}?")
_FRAC = re.compile(r"\\[dt]?frac\s{0,3}\{([^{}]{1,60})\}\s{0,3}\{([^{}]{1,60})\}")
_COMMA_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_SPACE_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:[\u00a0\u202f\u2009]\d{3})+(?:[.,]\d+)?")
_DOT_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:\.\d{3})+,\d+")
_PLAIN = re.compile(r"\d*\.?\d+")
_DECIMAL_COMMA = re.compile(r"\d+,\d+")

# -- numbers written in words -----------------------------------------------------------------------
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {w: 10 ** (3 * (i + 1)) for i, w in enumerate(
    "thousand million billion trillion quadrillion quintillion sextillion septillion octillion nonillion "
    "decillion".split())}
_PRONOUN_BEFORE_ONE = frozenset("the this that each which every any another a an".split())
_WORD = re.compile(r"[^\W\d_]+")
_WORDY = frozenset(_UNITS) | frozenset(_TENS) | frozenset(_SCALES) | {"hundred", "none", "point", "minus",
                                                                     "negative", "and", "a"}

# -- where the final answer is ----------------------------------------------------------------------
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)


def _trie(words: set[str]) -> str:
    """An alternation of ``words`` as a prefix tree (``t(?:en|hree|...)``): one test per character
    instead of one per word."""
    tree: dict[str, Any] = {}
    for w in words:
        node = tree
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(c) + emit(sub) for c, sub in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and "" not in node else "(?:" + "|".join(branches) + ")"
        return body + ("?" if "" in node else "")
    return emit(tree)


# What may follow "the answer is" for it to be an answer: a number in digits or words, or a LaTeX number.
_NUMBER_START = (r"(?=" + _SIGN + r"?\s?\.?\d|\\boxed|\\[dt]?frac|(?:"
                 + _trie(set(_UNITS) | set(_TENS) | {"minus", "negative", "none", "a hundred"}) + r")\b)")
# Each marker pattern starts with a literal ("nswer", "NSWER", "\"): the engine jumps between its
# occurrences as fast as str.find, and only those are looked at (rule 7). "Answer" is read in lower, title
# and upper case.
_AFTER_ANSWER = (
    r"[ \t*_]{0,8}+(?:"
    r"(?P<colon>[^\S\n]{0,4}+[:=：])"  # Answer: / Answer = / **Answer:**
    r"|(?:[iI][sS]|(?:[wW]ould|[sS]hould|[wW]ill)\s{1,3}[bB][eE])\b[ \t*_:]{0,8}+(?:\$|\(|\\\(|\\\[){0,3}+(?i:"
    + _NUMBER_START + r"))"
)
_MARKERS = (
    re.compile(r"nswer(?<=[aA]nswer)(?<![^\W\d_].nswer)s?\b" + _AFTER_ANSWER),
    re.compile(r"NSWER(?<=ANSWER)(?<![^\W\d_].NSWER)S?\b" + _AFTER_ANSWER),
    re.compile(r"\\(?:boxed|fbox)\s{0,8}\{"),
)
_SENTENCE_END = re.compile(r"[.!?;。](?=\s|$)")
_WRAPPERS = re.compile(r"\\text\{|\\mathrm\{|\\mathbf\{|\\[()\[\]]|[*_$`{}]")


def canonical_number(value: Any) -> str:
    """Normalise a numeric answer to its canonical decimal string.

    ``3``, ``"3.0"``, ``" 3 "``, ``"+3"``, ``"1,000"`` → ``"3"`` … ``"1000"``; ``2.50`` → ``"2.5"``;
    ``-0`` → ``"0"``. Every digit is kept (no rounding at any length). Raises ``ValueError`` for
    anything that is not a finite number (booleans too) or whose magnitude is beyond ``1e100``.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        text = repr(value)
    else:
        text = str(value).strip().replace(",", "") if isinstance(value, str) else str(value)
    if len(text) > 4 * _MAX_EXPONENT:
        raise ValueError(f"number out of range: {text[:40]!r}")
    try:
        d = Decimal(text)
    except (InvalidOperation, ArithmeticError, ValueError, TypeError):
        raise ValueError(f"not a number: {str(value)[:40]!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {str(value)[:40]!r}")
    if d == 0:
        return "0"
    if abs(d.adjusted()) > _MAX_EXPONENT:  # 1e999999999 would be a billion-digit string (or overflow)
        raise ValueError(f"number out of range: {str(value)[:40]!r}")
    # normalize() rounds to the context's precision: give it every digit (the default 28 rounded long answers)
    d = d.normalize(Context(prec=max(28, len(d.as_tuple().digits))))
    sign, digits, exp = d.as_tuple()
    if isinstance(exp, int) and exp >= 0:  # finite: exp is an int (never 'n', 'N' or 'F')
        return ("-" if sign else "") + "".join(map(str, digits)) + "0" * exp
    return format(d, "f")


def _in_range(v: Fraction) -> bool:
    return v == 0 or Fraction(1, 10 ** _MAX_EXPONENT) <= abs(v) < 10 ** _MAX_EXPONENT


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(c)) if c.isdigit() and not c.isascii() else c for c in text)


def _blob_values(blob: str) -> list[Fraction]:
    """The number(s) a run of digits and separators stands for: one, or several when it is a list."""
    blob = _ascii_digits(blob)
    if len(blob) > 2 * _MAX_EXPONENT:
        return []
    if _COMMA_THOUSANDS.fullmatch(blob):
        text = blob.replace(",", "")
    elif _SPACE_THOUSANDS.fullmatch(blob):
        text = re.sub(r"[\u00a0\u202f\u2009]", "", blob).replace(",", ".")
    elif _DOT_THOUSANDS.fullmatch(blob):
        text = blob.replace(".", "").replace(",", ".")
    elif _PLAIN.fullmatch(blob):
        text = blob
    elif _DECIMAL_COMMA.fullmatch(blob):
        text = blob.replace(",", ".")
    else:  # 1,2,3 or 1.2.3 or 3 4: a list of numbers, each its own
        return [Fraction(p) for p in re.split(r"[" + _SEP + r"]", blob) if p]
    return [Fraction(Decimal(text))]


def _signed_int(text: str) -> int:
    sign = -1 if text[:1] in _SIGNS[1:] else 1
    return sign * int(_ascii_digits(text.lstrip(_SIGNS)))


def _power(base: Fraction, exponent: int) -> Fraction | None:
    if base == 0:
        return Fraction(0) if exponent > 0 else None
    magnitude = abs(math.log10(abs(base.numerator)) - math.log10(base.denominator)) if base != 1 else 0.0
    if magnitude * abs(exponent) > _MAX_EXPONENT + 1:
        return None
    return base ** exponent


def _digit_numbers(text: str) -> list[tuple[int, int, Fraction | None]]:
    """``(start, end, value)`` of every number written in digits (value ``None``: not a usable number)."""
    out: list[tuple[int, int, Fraction | None]] = []
    for m in _NUMBER.finditer(text):
        values = _blob_values(m["blob"])
        if len(values) != 1:
            out.extend([(m.start(), m.end(), v) for v in values] or [(m.start(), m.end(), None)])
            continue
        v: Fraction | None = values[0]
        if m["exp"] is not None:
            v = _power(Fraction(10), _signed_int(m["exp"]))
            v = None if v is None else values[0] * v
        if v is not None and m["sci"] is not None:
            p = _power(Fraction(10), _signed_int(m["sci"]))
            v = None if p is None else v * p
        if v is not None and m["pow"] is not None:
            v = _power(v, _signed_int(m["pow"]))
        if v is not None and m["den"] is not None:
            den = Fraction(Decimal(_ascii_digits(m["den"])))
            v = v / den if den else None
        if v is not None and m["sign"] and m["sign"].strip() in _SIGNS[1:]:
            v = -v
        out.append((m.start(), m.end(), v if v is not None and _in_range(v) else None))
    return out


def _word_numbers(text: str, digits: list[tuple[int, int, Fraction | None]]) -> tuple[
        list[tuple[int, int, Fraction | None]], dict[int, Fraction]]:
    """Numbers written in words, and digit numbers scaled by a following word (``2 million``).

    Returns ``(numbers, rescaled)``: ``rescaled`` maps an index in ``digits`` to its new value."""
    words = [(m.start(), m.end(), m.group(0).lower()) for m in _WORD.finditer(text)]
    out: list[tuple[int, int, Fraction | None]] = []
    rescaled: dict[int, Fraction] = {}
    digit_end = {end: i for i, (_, end, _) in enumerate(digits)}
    i = 0
    while i < len(words):
        start, end, w = words[i]
        gap_before = text[words[i - 1][1]:start] if i else ""
        # "2 million", "1.5 billion": a scale word right after a digit number multiplies it
        if w in _SCALES or w == "hundred":
            j = digit_end.get(len(text[:start].rstrip()))
            base = digits[j][2] if j is not None else None
            if j is not None and base is not None and j not in rescaled:
                rescaled[j] = base * (100 if w == "hundred" else _SCALES[w])
                i += 1
                continue
        negative = False
        k = i
        if w in ("minus", "negative") and k + 1 < len(words) and words[k + 1][2] in _UNITS.keys() | _TENS.keys():
            negative, k = True, k + 1
        w = words[k][2]
        if w == "none" and not negative:
            out.append((start, end, Fraction(0)))
            i += 1
            continue
        starts_group = w in _UNITS or w in _TENS or (
            w == "a" and k + 1 < len(words) and words[k + 1][2] in (_SCALES.keys() | {"hundred"})
            and not text[words[k][1]:words[k + 1][0]].strip())
        if not starts_group or (w == "one" and i > 0 and words[i - 1][2] in _PRONOUN_BEFORE_ONE
                                and not gap_before.strip(" ")):
            i += 1
            continue
        total, current, last, decimals = 0, 0, "", ""
        g_end = words[k][1]
        while k < len(words):
            s, e, w = words[k]
            if k > i and not re.fullmatch(r"[\s,-]*", text[words[k - 1][1]:s]):
                break  # only spaces, hyphens and commas between the words of one number
            if decimals or last == "point":
                if w in _UNITS and _UNITS[w] < 10:
                    decimals += str(_UNITS[w])
                    last, g_end, k = "point", e, k + 1
                    continue
                break
            if w == "a" and last == "":
                current, last = 1, "unit"
            elif w in _UNITS:
                if last in ("unit", "teen") or (last == "ten" and _UNITS[w] >= 10) or last == "ten1":
                    break
                current += _UNITS[w]
                last = "teen" if _UNITS[w] >= 10 else ("ten1" if last == "ten" else "unit")
            elif w in _TENS:
                if last in ("unit", "teen", "ten", "ten1"):
                    break
                current += _TENS[w]
                last = "ten"
            elif w == "hundred" and last in ("unit", "teen", "ten", "ten1"):
                current *= 100
                last = "hundred"
            elif w in _SCALES and last in ("unit", "teen", "ten", "ten1", "hundred"):
                total += current * _SCALES[w]
                current, last = 0, "scale"
            elif w == "and" and last in ("hundred", "scale") and k + 1 < len(words) and (
                    words[k + 1][2] in _UNITS or words[k + 1][2] in _TENS):
                last = "and"
                k += 1
                continue
            elif w == "point" and last in ("unit", "teen", "ten", "ten1", "hundred", "scale") and not decimals:
                last = "point"
                k += 1
                continue
            else:
                break
            g_end = e
            k += 1
        value = Fraction(total + current) + (Fraction(f"0.{decimals}") if decimals else 0)
        out.append((start, g_end, -value if negative else value))
        i = max(k, i + 1)
    return out, rescaled


def _prepare(text: str) -> str:
    """LaTeX number forms as plain text: ``\\frac{3}{4}`` → ``3/4``, ``1\\,000`` → thin-space grouping,
    ``2{,}5`` → ``2,5``; an exponent after a letter (the ``2`` of ``m^2``) is dropped."""
    text = _FRAC.sub(lambda m: f"{m[1]}/{m[2]}", text)
    return _EXPONENT_AFTER_LETTER.sub(" ", text.replace("\\,", "\u2009").replace("{,}", ","))


def _numbers(text: str) -> list[tuple[int, int, Fraction | None]]:
    """Every number in ``text`` (prepared by :func:`_prepare`; digits and words), in order."""
    digits = _digit_numbers(text)
    words, rescaled = _word_numbers(text, digits)
    for j, v in rescaled.items():
        digits[j] = (digits[j][0], digits[j][1], v if _in_range(v) else None)
    return sorted(digits + words, key=lambda n: n[0])


def _one_value(answer: str) -> Fraction | None:
    """The value of a final answer: exactly one distinct number (after the last ``=``), else ``None``."""
    if len(answer) > _MAX_ANSWER:
        return None
    answer = _prepare(answer).rpartition("=")[2]
    values = {v for _, _, v in _numbers(answer)}
    if len(values) != 1:
        return None
    return values.pop()


def _region(text: str) -> str:
    """The text outside reasoning blocks (rule 1)."""
    last = _last_match((_THINK_CLOSE,), text)
    if last is not None:
        text = text[last.end():]
    opened = _THINK_OPEN.search(text)
    return text[:opened.start()] if opened else text


def _last_match(patterns: Sequence[re.Pattern[str]], text: str) -> re.Match[str] | None:
    """The last match of any of ``patterns`` (each match shorter than 256 characters with its look-ahead),
    searched from the end in growing windows: the usual completion ends with its answer, and the worst
    case reads the text about once (linear)."""
    size, end, slack = 4096, len(text), 256
    while end > 0:
        start = max(0, end - size)
        stop = min(len(text), end + slack)
        last = None
        for pattern in patterns:
            for m in pattern.finditer(text, start, stop):
                if m.start() < end and (last is None or m.start() > last.start()):
                    last = m  # those from ``end`` on were searched by the window before
        if last is not None:
            return last
        end, size = start, size * 16
    return None


def _boxed_content(text: str, open_brace: int) -> str | None:
    depth, i, stop = 1, open_brace, min(len(text), open_brace + _MAX_SCAN)
    while i < stop:
        j = min((p for p in (text.find("{", i, stop), text.find("}", i, stop)) if p >= 0), default=-1)
        if j < 0:
            return None
        depth += 1 if text[j] == "{" else -1
        if depth == 0:
            return text[open_brace:j]
        i = j + 1
    return None


def final_value(completion: Any) -> Fraction | None:
    """The value a completion gives by the module rules, or ``None``. Raises nothing for a ``str``;
    :func:`extract_answer` and :func:`score` guard every other input too."""
    if not isinstance(completion, str):
        return None
    text = _region(completion)
    marker = _last_match(_MARKERS, text)
    if marker is None:  # rule 3: only a bare number counts
        bare = _prepare(_WRAPPERS.sub(" ", text.strip()[: _MAX_ANSWER + 1]))
        if len(bare) > _MAX_ANSWER:
            return None
        numbers = _numbers(bare)
        if not numbers:
            return None
        rest = bare
        for s, e, _ in sorted(numbers, key=lambda n: -n[0]):
            rest = rest[:s] + rest[e:]
        if rest.strip(" \t\r\n.!,;:()[]\\%"):
            return None
        values = {v for _, _, v in numbers}
        return values.pop() if len(values) == 1 else None
    if marker.group(0).endswith("{"):  # \boxed{…}
        content = _boxed_content(text, marker.end())
        return None if content is None else _one_value(content)
    after = text[marker.end():]
    if marker["colon"] is not None and not after[: after.find("\n") if "\n" in after else None].strip(" \t*_$"):
        after = after.lstrip(" \t*_$\r\n")  # "Answer:" with the number on the next line
    newline = after.find("\n")
    line = after[: min(len(after) if newline < 0 else newline, _MAX_ANSWER + 1)]
    boxed = re.search(r"\\(?:boxed|fbox)\s{0,8}\{", line)
    if boxed:
        content = _boxed_content(after, boxed.end())
        return None if content is None else _one_value(content)
    stop = _SENTENCE_END.search(line)
    return _one_value(line[: stop.start()] if stop else line)


def _canonical(v: Fraction) -> str:
    """``v`` as a canonical decimal string when it has one, else ``"p/q"``."""
    den = v.denominator
    twos_fives = den
    for p in (2, 5):
        while twos_fives % p == 0:
            twos_fives //= p
    if twos_fives != 1:
        return f"{v.numerator}/{den}"
    ctx = Context(prec=2 * _MAX_EXPONENT + 10)
    return canonical_number(ctx.divide(Decimal(v.numerator), Decimal(den)))


def extract_answer(completion: Any) -> str | None:
    """The canonical number a completion gives (see the module rules), or ``None``. Never raises."""
    try:
        v = final_value(completion)
        return None if v is None else _canonical(v)
    except Exception:  # noqa: BLE001 - rule 7: a reward never raises; the tests call final_value unguarded
        return None


def score(completion: Any, answer: Any) -> float:
    """1.0 when the completion's value equals ``answer`` (a canonical number), else 0.0. Never raises."""
    try:
        want = Fraction(Decimal(canonical_number(answer)))
        got = final_value(completion)
    except Exception:  # noqa: BLE001 - rule 7
        return 0.0
    return 1.0 if got is not None and got == want else 0.0


def _version(dist: str) -> tuple[int, ...] | None:
    """The version of ``dist``: of the module loaded in this process when it is, else of its installed
    distribution; ``None`` when it is neither."""
    raw = getattr(sys.modules.get(dist), "__version__", None)
    if not isinstance(raw, str):
        from importlib.metadata import PackageNotFoundError, version
        try:
            raw = version(dist)
        except (PackageNotFoundError, ValueError, OSError):  # not installed, or metadata of a broken install
            return None
    parts = []
    for piece in raw.split(".")[:3]:
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group(0)))
    return tuple(parts)


def check_versions(*dists: str) -> None:
    """Raise ``ImportError`` with one line when an installed trainer library is older than
    :data:`MIN_VERSIONS` (``dists`` default: those already imported in this process)."""
    for dist in dists or tuple(d for d in MIN_VERSIONS if d in sys.modules):
        have = _version(dist)
        need = MIN_VERSIONS.get(dist)
        if have is not None and need is not None and have < need:
            need_s = ".".join(map(str, need))
            why = " (older versions ignore the images column and train on the text alone)" if dist == "trl" else ""
            raise ImportError(f"HopChain releases need {dist}>={need_s}, found {'.'.join(map(str, have))}{why}: "
                              f"pip install -U '{dist}>={need_s}'")


_checked: set[str] = set()


def _require(dist: str) -> None:
    if dist not in _checked:
        check_versions(dist)
        _checked.add(dist)


def compute_score(data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any = None,
                  **kwargs: Any) -> float:
    """verl's custom reward (verl 0.9: ``reward.custom_reward_function.path=pipelines/reward.py``,
    ``reward.custom_reward_function.name=compute_score``); verl passes further keyword arguments
    (``reward_router_address``, ``reward_model_tokenizer``, …), all ignored."""
    _require("verl")
    return score(solution_str, ground_truth)


def _text(completion: Any) -> str | None:
    """A TRL completion: a string, or a conversation (list of ``{"role", "content"}``), content text or parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # typed content parts
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
        return content if isinstance(content, str) else None
    return None


def trl_reward(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL's reward-function signature (``GRPOTrainer(reward_funcs=[trl_reward], ...)``): TRL passes
    the dataset's ``answer`` column as ``answer``. One score per completion."""
    _require("trl")
    return [score(_text(c), a) for c, a in zip(completions, answer, strict=True)]


check_versions()  # at import: a trainer library already loaded in this process that is too old
