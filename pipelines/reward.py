"""The verifiable reward of a HopChain question: a completion's number against the released answer.

Standard library only (no Airflow, no torch, no pyarrow): trainers import it as it is, from the
platform or from the copy each release carries (``pipelines/reward.py`` in the registry; the dataset
card names :data:`REWARD_VERSION`). The difficulty solver of the question stage uses the same
functions, so a question's measured pass rate and the trainer's reward agree.

The rules, stated once:

* **The number of a completion** (:func:`extract_answer`) is the one on its last ``Answer: <n>``
  line (``Answer = n`` and markdown ``**Answer:** n`` too); without such a line, the last number in
  the text. Numbers are written in digits — ``3``, ``-2``, ``3.0``, ``1,000`` (thousands commas) —
  optionally followed by a unit or punctuation (``3 cups``, ``Answer: 3.``). After ``Answer:`` only,
  the English words ``zero`` … ``twenty`` count too (``Answer: three``); elsewhere a word is not a
  number (``three cups`` alone gives no number), so free text never yields an accidental answer.
* **Equality** is on :func:`canonical_number` strings: ``3``, ``3.0``, ``+3`` and ``3.00`` are one
  answer; ``2.5`` and ``2.50`` are one answer; no tolerance beyond that (answers are counts and
  small sums).
* **The reward** (:func:`score`) is 1.0 when the completion's number equals the answer, else 0.0
  (no number: 0.0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["ANSWER_FORMAT", "REWARD_VERSION", "canonical_number", "compute_score", "extract_answer", "score",
           "trl_reward"]

#: Named on the dataset card; changes whenever a rule above changes.
REWARD_VERSION = "hopchain-reward-1"

#: What the released prompts ask of the model, after the question (the rule :func:`extract_answer` reads).
ANSWER_FORMAT = "Think it through, then give the number on the last line as: Answer: <number>"

_MAX_EXPONENT = 100  # |value| beyond 1e100 is no answer to any question (and would not fit a string)
_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_ANSWER = re.compile(r"answer\s*\**\s*[:=]\s*\**\s*(" + _NUM + r"|" + "|".join(_WORDS) + r")\b",
                     re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])" + _NUM + r"(?![\d])")


def canonical_number(value: Any) -> str:
    """Normalise a numeric answer to its canonical decimal string.

    ``3``, ``"3.0"``, ``" 3 "``, ``"+3"``, ``"1,000"`` → ``"3"`` … ``"1000"``; ``2.50`` → ``"2.5"``;
    ``-0`` → ``"0"``. Raises ``ValueError`` for anything that is not a finite number (booleans too).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        text = repr(value)
    else:
        text = str(value).strip().replace(",", "") if isinstance(value, str) else str(value)
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
    d = d.normalize()
    sign, digits, exp = d.as_tuple()
    if isinstance(exp, int) and exp >= 0:  # finite: exp is an int (never 'n', 'N' or 'F')
        return ("-" if sign else "") + "".join(map(str, digits)) + "0" * exp
    return format(d, "f")


def extract_answer(completion: str | None) -> str | None:
    """The canonical number a completion gives (see the module rules), or ``None``."""
    text = completion or ""
    hits = _ANSWER.findall(text)
    if hits:
        last = hits[-1]
        last = _WORDS.get(last.lower(), last)
    else:
        numbers = _NUMBER.findall(text)
        if not numbers:
            return None
        last = numbers[-1]
    try:
        return canonical_number(last)
    except ValueError:
        return None


def score(completion: str | None, answer: Any) -> float:
    """1.0 when the completion's number equals ``answer`` (canonically), else 0.0."""
    got = extract_answer(completion)
    try:
        want = canonical_number(answer)
    except ValueError:
        return 0.0
    return 1.0 if got is not None and got == want else 0.0


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None) -> float:
    """verl's custom reward signature (``custom_reward_function.path`` = this file,
    ``custom_reward_function.name=compute_score``)."""
    return score(solution_str, ground_truth)


def _text(completion: Any) -> str:
    """A TRL completion: a string, or a conversation (list of ``{"role", "content"}``)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else ""
        if isinstance(content, list):  # typed content parts
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(content)
    return ""


def trl_reward(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL's reward-function signature (``GRPOTrainer(reward_funcs=[trl_reward], ...)``): TRL passes
    the dataset's ``answer`` column as ``answer``."""
    return [score(_text(c), a) for c, a in zip(completions, answer, strict=True)]
