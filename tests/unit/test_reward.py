"""The shipped reward (``hopchain-reward-2``): the number a completion gives, against the release's
canonical answer. A table of the forms completions take (``tests/support/reward_cases.py``, also judged
by ``bench/reward.py``) and properties over generated completions."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipelines.reward as reward
from pipelines.release.registry import stage_code_deps
from pipelines.reward import (
    REWARD_VERSION,
    canonical_number,
    check_versions,
    compute_score,
    extract_answer,
    final_value,
    score,
    trl_reward,
)
from tests.support.release_rows import build_registry
from tests.support.reward_cases import CASES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("kind", "completion", "number"), CASES, ids=[f"{k}:{c[:40]!r}" for k, c, _ in CASES])
def test_the_table_of_completions(kind: str, completion: str, number: str | None) -> None:
    assert extract_answer(completion) == number
    if number is not None and "/" not in number:
        assert score(completion, number) == 1.0
        assert score(completion, str(Decimal(number) + 1)) == 0.0
    else:
        assert score(completion, "3") == (1.0 if number == "3" else 0.0)


def test_score_compares_values_exactly() -> None:
    assert score("Answer: 3.0", "3") == 1.0
    assert score("Answer: 3", 3) == 1.0
    assert score("Answer: 3/4", "0.75") == 1.0
    assert score("Answer: 1/3", "0.3333333333") == 0.0  # never rounded
    assert score("Answer: 4", "3") == 0.0
    assert score("no number here", "3") == 0.0
    assert score("Answer: 3", "not a number") == 0.0
    assert REWARD_VERSION == "hopchain-reward-2"


def test_verl_passes_extra_keywords_and_they_are_ignored() -> None:
    extra = {"question_id": "q", "reward_version": "hopchain-reward-1"}  # a row of an older part
    assert compute_score("hopchain", "Answer: 2.5", "2.50", extra) == 1.0
    assert compute_score(data_source="hopchain", solution_str="Answer: 2", ground_truth="2", extra_info=extra,
                         reward_router_address=None, reward_model_tokenizer=None, step=3) == 1.0


def test_trl_completions_as_text_or_conversation() -> None:
    completions = ["Answer: 1", [{"role": "assistant", "content": "so Answer: 2"}],
                   [{"role": "assistant", "content": [{"type": "text", "text": "Answer: 3"}]}],
                   [{"role": "assistant", "content": None}], [], None, [1, 2]]
    assert trl_reward(completions, ["1", "2", "3", "1", "1", "1", "1"], prompts=None) == [1.0, 1.0, 1.0, 0, 0, 0, 0]


@pytest.mark.parametrize("value", [None, b"Answer: 3", 3, 3.0, ["Answer: 3"], {"a": 1}, object(), "\x00" * 10,
                                   "Answer: " + "9" * 5000, "\\boxed{" * 50, "</think>" * 20])
def test_no_input_raises(value: object) -> None:
    assert score(value, "3") in (0.0, 1.0)
    assert extract_answer(value) is None or isinstance(extract_answer(value), str)
    assert compute_score("hopchain", value, value) in (0.0, 1.0)


def test_canonical_number_keeps_every_digit() -> None:
    """reward-1's canonical_number rounded past 28 significant digits (Decimal's default precision)."""
    long = "1234567890123456789012345678901"
    assert canonical_number(long) == long
    assert canonical_number(long + ".50") == long + ".5"
    assert extract_answer(f"Answer: {long}") == long


def test_a_too_old_trainer_library_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reward, "_version", lambda dist: (0, 22, 1) if dist == "trl" else (9, 0))
    with pytest.raises(ImportError) as err:
        check_versions("trl")
    message = str(err.value)
    assert "\n" not in message and "trl>=0.24" in message and "0.22.1" in message and "images" in message
    check_versions("datasets", "verl")  # new enough: nothing raised
    monkeypatch.setattr(reward, "_version", lambda dist: None)  # not installed: nothing to check
    check_versions("trl")


def test_the_reward_file_runs_alone_in_a_bare_interpreter() -> None:
    """Every release carries this file: it must import with the standard library only (``-I``: no
    site-packages, no user site, no current directory)."""
    path = Path(reward.__file__)
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('r', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(m.REWARD_VERSION, m.score('<think>7</think> Answer: 4', '4'))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(path)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [REWARD_VERSION, "1.0"]


# -- properties ----------------------------------------------------------------------------------------

_PIECES = st.sampled_from(["answer", "Answer:", "Answer =", "the answer is ", "\\boxed{", "}", "{", "<think>",
                           "</think>", "\n", " ", "  ", "3", "-", "−", ".", ",", "1,000", "2,5", "e", "e5", "^",
                           "/", "=", "four", "twenty", "-one", "hundred", "and", "million", "point", "the one",
                           "$", "**", "\\frac{1}{2}", "×10^", "%", "cups", "٣", "\u202f", "x", "or"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_tricky_text_never_raises(text: str) -> None:
    v = final_value(text)  # unguarded: a bug here shows as an exception, not as a silent 0
    assert v is None or isinstance(v, Fraction)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_never_raises(text: str) -> None:
    v = final_value(text)
    assert v is None or isinstance(v, Fraction)


@given(st.integers(min_value=-10**6, max_value=10**6))
def test_every_integer_written_plainly_scores_against_itself(n: int) -> None:
    for text in (f"{n}", f"Answer: {n}", f"Answer: {n}.", f"reasoning...\nAnswer: {n} items", f"{n}.0",
                 f"Answer: {n:,}", f"\\boxed{{{n}}}", f"So the answer is {n}.", f"Answer: {n}".replace("-", "−")):
        assert extract_answer(text) == canonical_number(n), text
        assert score(text, str(n)) == 1.0


@given(st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False))
def test_decimals_agree_with_canonical_number(d: Decimal) -> None:
    assert extract_answer(f"Answer: {d}") == canonical_number(str(d))
    assert extract_answer(f"Answer: {d:e}") == canonical_number(str(d))  # scientific notation


@given(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=50))
def test_a_wrong_number_never_scores(got: int, want: int) -> None:
    assert score(f"Answer: {got}", str(want)) == (1.0 if got == want else 0.0)


@given(st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=999))
def test_two_different_numbers_in_the_final_answer_score_nothing(a: int, b: int) -> None:
    for text in (f"Answer: {a} or {b}", f"Answer: {a} (or maybe {b})", f"\\boxed{{{a}, {b}}}"):
        assert extract_answer(text) == (canonical_number(a) if a == b else None), text


@given(st.text(max_size=200).filter(lambda t: "think>" not in t.lower() and "<reasoning>" not in t.lower()
                                    and "</reasoning" not in t.lower()),
       st.integers(min_value=0, max_value=10**4))
def test_reasoning_never_changes_the_answer(reasoning: str, n: int) -> None:
    final = f"Answer: {n}"
    assert extract_answer(f"<think>{reasoning}</think>\n{final}") == str(n)
    assert extract_answer(f"<think>{reasoning}") is None  # cut off inside the reasoning


@given(st.text(max_size=200).filter(lambda t: "<think>" not in t.lower()), st.integers(min_value=0, max_value=10**4))
def test_the_last_explicit_answer_wins(before: str, n: int) -> None:
    assert extract_answer(f"{before}\nAnswer: {n}") == str(n)


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n: int) -> str:
    """English words for ``n`` (a reference written independently of the module)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + _words(n % 100))
    for power, name in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if n >= power:
            return _words(n // power) + " " + name + ("" if n % power == 0 else " " + _words(n % power))
    raise AssertionError(n)


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_number_words_of_any_size(n: int) -> None:
    assert extract_answer(f"Answer: {_words(n)}") == str(n)
    assert extract_answer(f"the answer is {_words(n)}.") == str(n)


#: The last commit whose pipelines/reward.py is hopchain-reward-1: what every release before reward-2 carries.
REWARD_1_REV = "cc0087f"


def test_an_older_release_keeps_a_reward_that_works_for_it(tmp_path: Path) -> None:
    """A tag holds the ``pipelines/reward.py`` its card names (the release copies the code its stages list as
    deps). reward-1, as such a tag holds it, still imports alone and scores the rows a release writes; and
    reward-2 scores rows a reward-1 part wrote (the answer column is the same canonical string)."""
    assert "pipelines/reward.py" in stage_code_deps()
    try:
        old = subprocess.run(["git", "show", f"{REWARD_1_REV}:pipelines/reward.py"], cwd=Path(reward.__file__).parents[1],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"reward-1 is read from git history ({REWARD_1_REV}); this checkout lacks it: {exc}")
    registry = build_registry(tmp_path / "registry", n_images=4)
    rows = [r for p in sorted(registry.data.glob("*/part-*.parquet"))
            for r in pq.read_table(p, columns=["answer", "reward_model", "extra_info"]).to_pylist()]
    assert rows
    (registry.root / "pipelines" / "reward.py").write_text(old)  # the tag of an older release
    script = ("import json, sys; sys.path.insert(0, '.'); from pipelines import reward as r; "
              "rows = json.load(sys.stdin); "
              "print(r.REWARD_VERSION, sum(r.compute_score('hopchain', 'Answer: ' + x['answer'], "
              "x['reward_model']['ground_truth'], x['extra_info']) for x in rows), len(rows))")
    out = subprocess.run([sys.executable, "-I", "-c", script], cwd=registry.root, input=json.dumps(rows),
                         capture_output=True, text=True, check=True)
    version, scored, n = out.stdout.split()
    assert version == "hopchain-reward-1" and float(scored) == int(n) == len(rows)
    for r in rows:  # and this reward reads a reward-1 part's rows
        info = dict(r["extra_info"], reward_version="hopchain-reward-1")
        assert compute_score("hopchain", f"Answer: {r['answer']}", r["reward_model"]["ground_truth"], info) == 1.0
