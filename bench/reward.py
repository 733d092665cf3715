"""The shipped reward: time on degenerate completions as they grow, and the parsers judged on one table.

    .venv/bin/python bench/reward.py [--sizes 16000,128000,1000000] [--baseline-rev REV] [--judge-path DIR]

1. **Linear time.** Completions a policy really produces when it degenerates (a word repeated, a marker
   followed by whitespace, an unclosed box, digits without end) at each size; the time of one
   :func:`pipelines.reward.score` call, the worst shape per size, and the growth of the worst time per
   character from the next-to-largest size to the largest (1.0 = linear). Target: a 1 MB completion in < 50 ms.
   The baseline is the reward of ``--baseline-rev`` (``hopchain-reward-1``, read from git), run in a
   subprocess with a time limit on the smallest size only (it backtracks: seconds to minutes).
2. **The judge.** Every row of ``tests/support/reward_cases.py`` through this reward, the baseline, and the
   well-kept parsers when importable (``--judge-path``: a folder they were installed into with
   ``pip install --target``; they are not platform dependencies): HF ``math-verify``, ``word2number``,
   ``number-parser``. Printed: rows right, rows wrong, rows that raised, microseconds per row.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import cpu_model  # noqa: E402

from pipelines import reward  # noqa: E402
from tests.support.reward_cases import CASES  # noqa: E402

#: The last commit whose pipelines/reward.py is hopchain-reward-1 (what releases before reward-2 carry).
BASELINE_REV = "cc0087f"


def shapes(n: int) -> dict[str, str]:
    """Degenerate completions of about ``n`` characters, each ending without a valid final answer
    unless the shape says so (so every search runs over the whole text)."""
    def rep(unit: str) -> str:
        return unit * max(1, n // len(unit))
    return {
        "'answer' + spaces": "answer" + " " * (n - 6),
        "'Answer:' + spaces": "Answer:" + " " * (n - 7),
        "'answer ' repeated": rep("answer "),
        "'the answer is ' repeated": rep("the answer is "),
        "'Answer: ' repeated": rep("Answer: "),
        "digits": "7" * n,
        "'1,' repeated": rep("1,"),
        "'\\boxed{' repeated": rep("\\boxed{"),
        "'{' after \\boxed": "\\boxed{" + "{" * (n - 7),
        "'</think>' repeated": rep("</think>"),
        "'twenty ' repeated": rep("twenty "),
        "prose, answer at the end": rep("There are 3 red cups and 2 blue ones. ") + "\nAnswer: 5",
        "one long answer line": "Answer: " + rep("1 "),
        "letters": "a" * n,
    }


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def load_baseline(rev: str, workdir: Path) -> Path | None:
    try:
        src = subprocess.run(["git", "show", f"{rev}:pipelines/reward.py"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = workdir / "reward_baseline.py"
    path.write_text(src)
    return path


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def baseline_seconds(path: Path, text: str, limit_s: float) -> float | None:
    """One ``score`` call of the baseline in a subprocess; ``None`` when it ran past ``limit_s``."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    code = ("import importlib.util, sys, time; s = importlib.util.spec_from_file_location('b', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); t = open(sys.argv[2]).read(); "
            "t0 = time.perf_counter(); m.score(t, '5'); print(time.perf_counter() - t0)")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path), f.name], capture_output=True, text=True,
                             timeout=limit_s + 5)
        return float(out.stdout.strip())
    except subprocess.TimeoutExpired:
        return None
    finally:
        os.unlink(f.name)


def judges(judge_path: str | None, baseline: Any) -> dict[str, Callable[[str, str | None], bool]]:
    """name -> (completion, the table's number) -> right? Each parser is used the way its docs show: the
    extractors are compared on canonical numbers; math-verify by its own ``verify(parse(gold), parse(text))``
    (values, so ``3/4`` = ``0.75``), and "no answer" rows are right when it parses nothing."""
    def extracting(fn: Callable[[str], Any]) -> Callable[[str, str | None], bool]:
        def right(text: str, want: str | None) -> bool:
            got = fn(text)
            try:
                got = None if got is None else reward.canonical_number(got)
            except ValueError:
                got = str(got)
            return got == want
        return right

    out: dict[str, Callable[[str, str | None], bool]] = {
        "hopchain-reward-2 (this)": lambda text, want: reward.extract_answer(text) == want}
    if baseline is not None:
        out["hopchain-reward-1 (baseline)"] = lambda text, want: baseline.extract_answer(text) == want
    if judge_path:
        sys.path.insert(0, judge_path)
    try:
        import logging

        from math_verify import parse, verify  # type: ignore[import-not-found]
        logging.getLogger("math_verify").setLevel(logging.ERROR)

        def math_verify(text: str, want: str | None) -> bool:
            # parsing_timeout=None: its timeout is signal.alarm, which works only in a main thread
            got = parse(text, parsing_timeout=None)
            if want is None:
                return not got
            return bool(got) and verify(parse(f"${want}$", parsing_timeout=None), got, timeout_seconds=None)
        out["math-verify"] = math_verify
    except ImportError:
        pass
    try:
        from word2number import w2n  # type: ignore[import-not-found]
        out["word2number"] = extracting(w2n.word_to_num)
    except ImportError:
        pass
    try:
        from number_parser import parse_number  # type: ignore[import-not-found]
        out["number-parser"] = extracting(parse_number)
    except ImportError:
        pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16000,128000,1000000")
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--baseline-limit-s", type=float, default=20.0)
    ap.add_argument("--judge-path", default=os.environ.get("HOPCHAIN_REWARD_JUDGES"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"reward: {reward.REWARD_VERSION}; baseline: {args.baseline_rev}:pipelines/reward.py")
    work = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    base_path = load_baseline(args.baseline_rev, work)
    baseline = load_module(base_path, "reward_baseline") if base_path else None

    print("\n1. one score() call on a degenerate completion, ms (best of 3)\n")
    names = list(shapes(sizes[0]))
    print("| shape | " + " | ".join(f"{n:,} chars" for n in sizes) + f" | reward-1 at {sizes[0]:,} |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    worst = {n: 0.0 for n in sizes}
    base_worst = 0.0
    base_timeouts = 0
    for name in names:
        cells = []
        for n in sizes:
            text = shapes(n)[name]
            t = best_of(lambda text=text: reward.score(text, "5"))
            worst[n] = max(worst[n], t)
            cells.append(f"{t * 1000:.1f}")
        b = baseline_seconds(base_path, shapes(sizes[0])[name], args.baseline_limit_s) if base_path else None
        if b is None and base_path:
            base_timeouts += 1
            base_worst = max(base_worst, args.baseline_limit_s)
        elif b is not None:
            base_worst = max(base_worst, b)
        bcell = "-" if not base_path else (f"> {args.baseline_limit_s:.0f} s" if b is None else f"{b * 1000:.1f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {bcell} |")
    small, large = sizes[0], sizes[-1]
    mid = sizes[-2] if len(sizes) > 2 else small  # the smallest size is mostly fixed cost per call
    growth = (worst[large] / large) / (worst[mid] / mid)
    print(f"\nworst shape at {large:,} chars: {worst[large] * 1000:.1f} ms "
          f"(target < 50 ms for 1 MB: {'met' if worst[large] < 0.05 or large < 1_000_000 else 'MISSED'})")
    print(f"time per character, {large:,} vs {mid:,} chars: {growth:.2f}x (1.0 = linear)")
    if base_path:
        more = " or more" if base_timeouts else ""
        print(f"worst shape at {small:,} chars: reward-1 {base_worst:.1f} s{more} vs reward-2 "
              f"{worst[small] * 1000:.2f} ms: {base_worst / worst[small]:,.0f}x{more} faster")

    print(f"\n2. the judge: {len(CASES)} completions of tests/support/reward_cases.py\n")
    print("| parser | right | wrong | raised | us per row |")
    print("|---|---:|---:|---:|---:|")
    for name, fn in judges(args.judge_path, baseline).items():
        right = wrong = raised = 0
        t0 = time.perf_counter()
        for _, text, want in CASES:
            try:
                ok = fn(text, want)
            except Exception:  # noqa: BLE001 - a judged parser's own failure is what is being counted
                raised += 1
                continue
            right += ok
            wrong += not ok
        us = (time.perf_counter() - t0) / len(CASES) * 1e6
        print(f"| {name} | {right} | {wrong} | {raised} | {us:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
