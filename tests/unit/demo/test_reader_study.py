"""The reader-study packet (bench/reader_study.py): a reader gets images and questions, never the
program's answers, programs or the noise that made them; the noisy-perception variant runs end to end."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


def _reader_study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reader_study", REPO / "bench" / "reader_study.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_reader_sees_no_answers(out: Path) -> dict:
    packet = out / "packet"
    files = sorted(p.name for p in packet.iterdir())
    assert "questions.md" in files
    assert all(re.fullmatch(r"img-\d\d\.png", f) for f in files if f != "questions.md"), files
    key = json.loads((out / "key.json").read_text())
    assert key
    text = (packet / "questions.md").read_text()
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^(Q\d+) \(image img-\d\d\.png\): (.+)$", text, re.M)}
    assert set(lines) == set(key)
    for q, v in key.items():
        assert lines[q] == v["question"]  # the question line holds the question and nothing else
    for leak in ('"op"', "hops", "noise", "near_miss", "confusion", "score", "seed", ".jpg", "key.json"):
        assert leak not in text, leak
    return key


def test_the_annotated_packet_holds_no_answers_or_programs(tmp_path: Path) -> None:
    _reader_study().build_packet(tmp_path, photos=4, shapes=3, seeds=[0], sample_seed=0)
    key = _assert_reader_sees_no_answers(tmp_path)
    assert {v["group"] for v in key.values()} == {"photo", "shapes"}


def test_the_noisy_packet_runs_end_to_end(tmp_path: Path) -> None:
    # without the detector's recall: the perturbations, not the missed-member steering, refuse some of
    # these three seeds' candidates, and every refusal is attributed
    _reader_study().build_packet(tmp_path, photos=30, shapes=20, seeds=[0, 1, 2], sample_seed=0,
                                 perception="noisy", noise_seed=5, recall=False)
    key = _assert_reader_sees_no_answers(tmp_path)
    assert {v["group"] for v in key.values()} == {"photo"}  # photos only: the shapes are rendered truth
    assert all(isinstance(v["noise_events"], list) and v["seed"] in (0, 1, 2) for v in key.values())
    events = [e for v in key.values() for e in v["noise_events"]]
    assert events and all(set(e) == {"image_id", "kind", "categories", "objects", "detail"} for e in events)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["perception"] == "noisy" and run["noise_seed"] == 5 and run["noise_rates"]["recall_small"] > 0
    assert run["recall"] is False
    assert 0 < run["noisy_refused"] <= run["noisy_checked"]
    assert run["refused_touched"] + run.get("refused_other", 0) == run["noisy_refused"]
    assert run["noisy_released"] >= len(key)


def test_the_noisy_packet_is_seeded(tmp_path: Path) -> None:
    rs = _reader_study()
    for name in ("a", "b"):
        rs.build_packet(tmp_path / name, photos=30, shapes=0, seeds=[0], sample_seed=0, perception="noisy")
    assert (tmp_path / "a" / "key.json").read_text() == (tmp_path / "b" / "key.json").read_text()
    assert (tmp_path / "a/packet/questions.md").read_text() == (tmp_path / "b/packet/questions.md").read_text()


def test_the_truth_proxy_re_executes_every_released_question_on_the_annotated_scene(capsys) -> None:  # type: ignore[no-untyped-def]
    out = _reader_study().truth_agreement([0, 1], [3])
    assert out["questions"] > 0 and 0 < out["agree"] <= out["questions"]
    assert sum(n for _, n in out["by_terminal"].values()) == out["questions"]
    assert all(0 <= a <= n for a, n in out["by_terminal"].values())
    assert "the same answer on the annotated scene" in capsys.readouterr().out


def test_score_reports_each_reader_all_readers_pairs_and_the_truth_on_a_noisy_packet(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rs = _reader_study()
    rs.build_packet(tmp_path, photos=30, shapes=0, seeds=[0, 1], sample_seed=0, perception="noisy", noise_seed=3)
    key = json.loads((tmp_path / "key.json").read_text())
    qs = sorted(key, key=lambda q: int(q[1:]))
    right = {q: key[q]["answer"] for q in qs}
    files = []
    for name, wrong in (("a", set()), ("b", {qs[0]}), ("c", {qs[0], qs[1]})):
        f = tmp_path / f"{name}.txt"
        f.write_text("".join(f"{q}: {'?' if q in wrong else right[q]}\n" for q in qs))
        files.append(f)
    rs.score(tmp_path, files)
    out = capsys.readouterr().out
    n = len(qs)
    assert re.search(rf"^all readers agree\s+{n - 2}/{n} ", out, re.M), out
    # pairs (a,b), (a,c), (b,c) both right on n-1, n-2, n-2: the mean is what two readers would score
    assert f"{(3 * n - 5) / 3:.2f}/{n}" in out and f"(pairs: [{n - 1}, {n - 2}, {n - 2}])" in out
    # the truth proxy per question: each program re-executed on the annotated scene
    truth = re.search(r"^program = annotations\s+(\d+)/(\d+) ", out, re.M)
    assert truth and int(truth.group(2)) == n and 0 < int(truth.group(1)) <= n
    assert "(annotations " in out  # beside each miss
