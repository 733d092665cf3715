"""``make bench``: run every benchmark of ``bench/`` and write ``bench/RESULTS.md``.

    .venv/bin/python bench/run_all.py [--only questions,demo] [--out bench/RESULTS.md]

Each bench runs as its own subprocess (one at a time, ``OMP_NUM_THREADS=1``) with sizes chosen so
the whole run takes about 15 minutes on a 2-core machine while every figure still rests on
thousands of rows / hundreds of images (the sizes are in the report). Their printed tables are kept
verbatim in the report; the headline figures — throughput and the ratio to each stage's baseline or
target — are read from those tables (or from the JSON of ``demo.py`` and ``worker_memory.py``) into
a summary at the top. A bench that fails is reported as failed with its output; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _machine import cpu_model

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
LAST_RUN = BENCH / "_work" / "last_run.json"  # git-ignored: raw outputs, for --render-only


@dataclass
class Bench:
    name: str
    title: str
    args: list[str]
    timeout_s: int
    json_out: bool = False
    default: bool = True  # False: runs only when named in --only
    rc: int | None = None
    seconds: float = 0.0
    output: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc == 0


BENCHES = [
    Bench("questions", "Question engine: quality on the demo samples (10 seeds) and images/s (one core)",
          ["bench/questions.py", "--seeds", "0-9", "--sizes", "5,20,80", "--images", "200"], 900),
    Bench("validation", "Validation: GX questions suite on 1,000,000 rows",
          ["bench/validation.py", "--rows", "1000000", "--images", "50000"], 420),
    Bench("perception", "Perception: images/s per backend (tiny random-weight models on CPU)",
          ["bench/perception.py", "--images", "8", "--size", "640x480", "--repeats", "2"], 420),
    Bench("annotation", "Annotation: Label Studio push (batched vs per task) and consensus",
          ["bench/annotation.py", "--batched", "1000", "--single", "100", "--batch-size", "500",
           "--annotations", "10000"], 420),
    Bench("journal", "Annotation journal: snapshot cost per 1,000 annotations (issue 26)",
          ["bench/journal.py", "--annotations", "1000,4000,16000", "--passes", "100"], 300),
    Bench("reward", "Reward: one score() on degenerate completions up to 1 MB, and the parsers judged (issue 27)",
          ["bench/reward.py", "--sizes", "16000,128000,1000000"], 300),
    Bench("release", "Release: DVC push vs plain boto3 (same objects, same concurrency)",
          ["bench/release.py", "--images", "2000", "--questions-per-image", "5",
           "--sizes", "160x120,320x240,640x480"],
          600),
    Bench("worker_memory", "CPU stage worker on one 500-image shard (one process)",
          ["bench/worker_memory.py", "--images", "500"], 600, json_out=True),
    Bench("demo", "End-to-end demo through the real Airflow scheduler (cold stack)",
          ["bench/demo.py", "--images", "24"], 1200, json_out=True),
    Bench("scale", "Nightly at scale through the real scheduler (opt-in: --only scale; ~45 min)",
          ["bench/scale.py", "--sizes", "1000,5000", "--shard-size", "250", "--extra", "0.05", "--filler", "50000"],
          3600, json_out=True, default=False),
]




def ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def run(b: Bench, workdir: Path) -> None:
    args = list(b.args)
    json_path = workdir / f"{b.name}.json"
    if b.json_out:
        args += ["--json", str(json_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    print(f"\n=== {b.name}: {' '.join(args)}", flush=True)
    t0 = time.monotonic()
    lines: list[str] = []
    proc = subprocess.Popen([PY, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = t0 + b.timeout_s
        for line in proc.stdout:  # stream, so the user sees progress
            print(f"  | {line.rstrip()}", flush=True)
            lines.append(line.rstrip("\n"))
            if time.monotonic() > deadline:
                break
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.terminate()  # its own session: the bench's finally-blocks stop its servers
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            lines.append(f"[run_all] timed out after {b.timeout_s} s")
        b.rc = proc.returncode
    finally:
        b.seconds = time.monotonic() - t0
    b.output = "\n".join(lines)
    if b.json_out and json_path.exists():
        b.data = json.loads(json_path.read_text())
    print(f"=== {b.name}: rc={b.rc} in {b.seconds:.0f} s", flush=True)


# -- headline figures read from each bench's printed table ----------------------------------------
Row = tuple[str, str, str, str, str]  # stage, measure, throughput, baseline / target, ratio


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def rows_questions(b: Bench) -> list[Row]:
    out: list[Row] = []
    quality = [
        ("images/s (end to end from RLE)", "demo samples, end to end from RLE", "images/s"),
        ("distinct program skeletons", "distinct program skeletons", ""),
        ("both hop kinds (target 100%)", "full questions with both hop kinds", "target 100%"),
        ("self-answering (target 0)", "self-answering questions", "target 0"),
        ("beyond reach (target 0)", "questions beyond a person's reach", "target 0"),
        ("image coverage (>=3 inst., >=2 cat.)", "image coverage (>= 3 instances, >= 2 categories)", "target 90%"),
        ("zero answers", "zero answers", "-"),
        ("answer entropy (bits)", "answer entropy (bits)", "-"),
        ("language-prior baseline (lower is better)", "language-prior baseline accuracy", "lower is better"),
    ]
    for label, measure, target in quality:
        m = re.search(rf"^\s*{re.escape(label)}\s+(.+)$", b.output, re.M)
        if m:
            out.append(("questions", measure, m.group(1).strip(), target or "-", "-"))
    # instances, cold img/s, warm img/s, q/image, cost x, cold img/cpu-s, warm img/cpu-s, (median), vs 200/s
    table = re.findall(r"^\s*(\d+)" + r"\s+([\d.]+)" * 8 + r"\s*$", b.output, re.M)
    for n, _cold, _warm, _q, cost, cold_cpu, warm_cpu, _median, vs in table:
        out.append(("questions", f"{n} instances/image, whole stage, per core (cold / warm)",
                    f"{float(cold_cpu):,.0f} / {float(warm_cpu):,.0f} images per CPU-second", "target 200 images/s at 20",
                    f"{float(vs):.2f}x (warm); {float(cost):.2f}x cost vs smallest"))
    growth = re.search(r"instances\^([\d.\-]+)", b.output)
    if growth:
        out.append(("questions", "cost growth exponent", f"cost ~ instances^{growth.group(1)}", "-", "-"))
    return out


def rows_validation(b: Bench) -> list[Row]:
    m = re.search(r"validate \(all, \+ result \+ docs\)\s+([\d.]+)\s+([\d,]+)", b.output)
    sizes = re.search(r"sizes\s*:\s*([\d,]+) questions", b.output)
    if not m:
        return []
    secs, rps = float(m.group(1)), _num(m.group(2))
    n = _num(sizes.group(1)) if sizes else float("nan")
    budget_rps = 1_000_000 / 60
    out = [("validation", f"questions suite, {n:,.0f} rows (all checks + Data Docs)", f"{rps:,.0f} rows/s ({secs:.1f} s)",
            "1M rows in 60 s = 16,667 rows/s", f"{rps / budget_rps:.2f}x")]
    p = re.search(r"computed columns only\s+([\d.]+)\s+([\d,]+)", b.output)
    if p:
        out.append(("validation", "computed columns only (the suite's own pass)", f"{_num(p.group(2)):,.0f} rows/s",
                    "-", "-"))
    return out


def rows_perception(b: Bench) -> list[Row]:
    out: list[Row] = []
    for stage, backend, dev, dt, bsz, ips, ms, rest in re.findall(
            r"^(detect|segment)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)(.*)$", b.output, re.M):
        enc = re.search(r"([\d.]+)%", rest)
        out.append((f"perception ({stage})", f"{backend} on {dev}, {dt}, batch {bsz}",
                    f"{float(ips):.2f} images/s ({float(ms):.0f} ms/image)",
                    "RLE encode < 5% of segment time (full-size models)" if enc else "-",
                    f"encode {enc.group(1)}%" if enc else "-"))
    return out


def rows_annotation(b: Bench) -> list[Row]:
    out: list[Row] = []
    cells = [[c.strip() for c in re.split(r"[│|┃]", line)[1:-1]] for line in b.output.splitlines()
             if line.count("│") >= 4 or line.count("┃") >= 4]
    for c in cells:
        if len(c) != 4 or not re.search(r"\d", c[2]):
            continue
        measure, size, tput, ratio = c
        base = "one import request per task" if measure.startswith(("push", "re-push")) else "-"
        out.append(("annotation", f"{measure} ({size})", tput, base, ratio))
    return out


def rows_release(b: Bench) -> list[Row]:
    out: list[Row] = []
    for block in re.split(r"\n(?=\s*image size \(synthetic JPEG\))", b.output)[1:]:
        size = re.search(r"image size \(synthetic JPEG\)\s+(\S+)", block)
        mb = re.search(r"bytes pushed\s+([\d.]+) MB", block)
        push = re.search(r"^\s*dvc push\s+([\d.]+) s \(([\d.]+) MB/s\)", block, re.M)
        boto = re.search(r"boto3 upload, same bytes, same concurrency\s+([\d.]+) s \(([\d.]+) MB/s\)", block)
        ratio = re.search(r"ratio dvc push / boto3 \(target <= 2\)\s+([\d.]+)", block)
        objs = re.search(r"objects pushed \(release \+ inputs snapshot\)\s+(\d+)", block)
        whole = re.search(r"whole release \(snapshot -> tag\)\s+([\d.]+) s", block)
        fixed = re.search(r"of which fixed cost \(no-op dvc push\)\s+([\d.]+) s", block)
        if not (size and push and boto and ratio):
            continue
        what = f"{size.group(1)} images, {objs.group(1) if objs else '?'} objects, {mb.group(1) if mb else '?'} MB"
        out.append(("release", f"dvc push ({what})", f"{push.group(2)} MB/s ({push.group(1)} s)",
                    f"boto3 {boto.group(2)} MB/s ({boto.group(1)} s); target ratio <= 2",
                    f"{ratio.group(1)}x the boto3 time"))
        if fixed:
            net = float(push.group(1)) - float(fixed.group(1))
            out.append(("release", f"dvc push less its fixed per-command cost of {fixed.group(1)} s ({size.group(1)})",
                        f"{net:.2f} s", f"boto3 {boto.group(1)} s", f"{net / float(boto.group(1)):.2f}x"))
        if whole:
            out.append(("release", f"whole release, snapshot -> tag ({size.group(1)})", f"{whole.group(1)} s", "-", "-"))
    return out


def rows_journal(b: Bench) -> list[Row]:
    out: list[Row] = []
    for m in re.finditer(r"^\| ([\d,]+) \| ([\d,]+) \| ([\d.,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|$",
                         b.output, re.M):
        out.append(("annotation journal", f"{m.group(1)} annotations over {m.group(2)} tend passes",
                    f"{m.group(5)} s, {m.group(3)} objects, {m.group(4)} KB per 1,000", "read back "
                    f"{m.group(6)} s per 1,000", "-"))
    ratio = re.search(r"vs [\d,]+ annotations: ([\d.]+)x", b.output)
    if ratio:
        out.append(("annotation journal", "cost per annotation, largest vs smallest size", f"{ratio.group(1)}x",
                    "linear: <= 1.2", f"{ratio.group(1)}x"))
    return out


def rows_reward(b: Bench) -> list[Row]:
    out: list[Row] = []
    worst = re.search(r"worst shape at ([\d,]+) chars: ([\d.]+) ms", b.output)
    if worst:
        out.append(("reward", f"one score() call, worst degenerate completion of {worst.group(1)} chars",
                    f"{worst.group(2)} ms", "< 50 ms for 1 MB", f"{float(worst.group(2)) / 50:.2f}x of the limit"))
    growth = re.search(r"time per character, ([\d,]+) vs ([\d,]+) chars: ([\d.]+)x", b.output)
    if growth:
        out.append(("reward", f"time per character, {growth.group(1)} vs {growth.group(2)} chars",
                    f"{growth.group(3)}x", "linear: <= 1.2", f"{growth.group(3)}x"))
    base = re.search(r"reward-1 ([\d.]+) s(?: or more)? vs reward-2 ([\d.]+) ms: ([\d,]+)x", b.output)
    if base:
        out.append(("reward", "worst degenerate completion, reward-1 vs reward-2", f"{base.group(2)} ms",
                    f"reward-1: {base.group(1)} s", f"{base.group(3)}x faster"))
    return out


def rows_worker(b: Bench) -> list[Row]:
    d = b.data
    if not d:
        return []
    out: list[Row] = []
    for s in d["stages"]:
        tput = "-" if s["images_per_s"] is None else f"{s['images_per_s']:,.1f} images/s"
        out.append(("CPU worker (1 shard)", f"{s['stage']}, {d['images']} images", f"{tput} ({s['seconds']:.1f} s)",
                    "peak RSS in stage", f"{s['peak_rss_mb']:.0f} MB"))
    out.append(("CPU worker (1 shard)", f"peak RSS, all stages, {d['images']} images", f"{d['peak_rss_mb']:.0f} MB",
                "target < 2 GB", f"{d['peak_rss_mb'] / 2048:.2f} of target"))
    return out


def rows_demo(b: Bench) -> list[Row]:
    d = b.data
    if not d:
        return []
    out: list[Row] = [
        ("demo", "stack start-up (cold, fresh home)", f"{d['startup_s']:.0f} s", "-", "-"),
    ]
    for dag_id, r in d["dags"].items():
        out.append(("demo", f"{dag_id} run wall time", f"{r['wall_s']:.0f} s" if r["wall_s"] else "-",
                    f"{r['tasks']} task instance(s)", r["state"]))
    out.append(("demo", f"start-up + demo ({d['images']} images -> release {d.get('tag')})", f"{d['total_s']:.0f} s",
                "target < 15 min (900 s)", f"{d['total_s'] / 900:.2f} of target"))
    out.append(("demo", "idle memory of the whole stack (PSS)", f"{d['idle_total_pss_mb']:.0f} MB",
                "target < 3 GB", f"{d['idle_total_pss_mb'] / 3072:.2f} of target"))
    return out


def rows_scale(b: Bench) -> list[Row]:
    from scale import overhead, push_rate, stage_seconds

    d = b.data
    if not d:
        return []
    a, z = d["nights"][0], d["nights"][-1]
    sa, sz = sum(stage_seconds(a).values()) / a["images"], sum(stage_seconds(z).values()) / z["images"]
    out: list[Row] = [("nightly at scale", f"all task seconds per image, {a['images']:,} -> {z['images']:,} images",
                       f"{sa:.3f} -> {sz:.3f} s/image", "linear: ratio <= 1.2", f"{sz / sa:.2f}x"),
                      ("nightly at scale", f"Airflow overhead per mapped shard ({z['images']:,} images)",
                       f"{overhead(z)['per_shard_s']:.1f} s", "-", "-")]
    second = d.get("second")
    if second:
        p1, p2 = push_rate(second["nights"][0]), push_rate(second["nights"][-1])
        filler = second.get("filler", {}).get("tasks", 0)
        out.append(("nightly at scale", f"push tasks/s, empty project -> +{filler:,} tasks", f"{p1['rate']:.0f} -> "
                    f"{p2['rate']:.0f} tasks/s", "the same", f"{p2['rate'] / p1['rate']:.2f}x" if p1["rate"] else "-"))
        dv = second.get("dvc")
        if dv:
            out.append(("nightly at scale", "second night (+5% images): dvc push bytes / first release",
                        f"{dv['push_added_bytes'] / dv['first_bytes']:.1%}", "target <= 10%", "-"))
            pull = dv["pull"]
            out.append(("nightly at scale", "trainer dvc pull of the new tag on top of the old / first pull",
                        f"{pull['added_bytes'] / pull['first_bytes']:.1%}", "target <= 10%", "-"))
    return out


SCALE_TITLE = "## Nightly at scale (bench/scale.py)"


def scale_section(by: dict[str, Bench], old: str) -> list[str]:
    """The scale bench's section: from this run when it ran, else carried over from the old report."""
    b = by.get("scale")
    if b and b.data:
        from scale import DEFINITIONS, report

        body = [f"* {ln}" if ln and not ln.startswith(("|", "Second night")) else ln for ln in report(b.data)]
        return [SCALE_TITLE, "", f"`.venv/bin/python {' '.join(b.args)}`", "", *body, "", *DEFINITIONS, ""]
    if SCALE_TITLE in old:
        rest = old.split(SCALE_TITLE, 1)[1]
        end = rest.find("\n## ")
        return [SCALE_TITLE + (rest[:end] if end >= 0 else rest).rstrip("\n"), ""]
    return []


PARSERS: dict[str, Callable[[Bench], list[Row]]] = {
    "questions": rows_questions, "validation": rows_validation, "perception": rows_perception,
    "annotation": rows_annotation, "release": rows_release, "worker_memory": rows_worker, "demo": rows_demo,
    "scale": rows_scale, "journal": rows_journal, "reward": rows_reward,
}


NOTES = [
    "* **Perception on this machine** uses tiny random-weight models of the real architectures (Qwen3-VL, "
    "SAM3, SAM2 in the sam2 package and in transformers) on CPU: the figures measure the code path (batching, "
    "processors, parsing, RLE encoding), not the real model cost, so the RLE-encode share is only meaningful "
    "with full-size models (`bench/perception.py --full-size` on a GPU). `openai*` is an in-process fake "
    "OpenAI-compatible server: client overhead only.",
    "* **DVC push vs boto3**: every `dvc push` pays a fixed 1-2 s (interpreter start, s3fs import, repository "
    "index), measured as a no-op push. With small releases that fixed cost dominates the ratio; the row "
    "*less its fixed per-command cost* shows the transfer itself.",
    "* **Demo memory per stage**: *task RSS* is the forked process that runs the stage code; the LocalExecutor "
    "worker that supervises it is a long-lived process (~150 MB) counted in *+ supervisor*. The deferred "
    "`wait` task is shown before it defers; while deferred it costs nothing but a trigger in the triggerer.",
    "* **Idle memory** is PSS (shared pages split between the processes that map them) of every process of the "
    "stack and all their children, read once the stack has been up for 15 s; RSS is shown beside it and "
    "over-counts pages shared between Airflow's components.",
    "* **Demo wall time** starts from a fresh stack home (database migrations included) but with the virtual "
    "environments already installed; `make setup` on a fresh machine adds the one-off installs.",
]


def _md_row(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def targets_table(by: dict[str, Bench]) -> list[str]:
    lines = ["| target (issue 11 / brief) | measured | status |", "|---|---|---|"]
    demo, worker, val, rel = by.get("demo"), by.get("worker_memory"), by.get("validation"), by.get("release")
    if demo and demo.data:
        d = demo.data
        pss = d["idle_total_pss_mb"]
        lines.append(_md_row(["whole local stack idles under 3 GB", f"{pss:,.0f} MB PSS ({d['idle_total_rss_mb']:,.0f} MB RSS)",
                              "OK" if pss < 3072 else "OVER"]))
        lines.append(_md_row(["`make demo` under 15 minutes (2-core machine)",
                              f"{d['total_s']:.0f} s = stack start-up {d['startup_s']:.0f} s + demo {d['demo_s']:.0f} s",
                              "OK" if d["total_s"] < 900 else "OVER"]))
    if worker and worker.data:
        w = worker.data
        lines.append(_md_row([f"a CPU stage worker stays under 2 GB on a {w['images']}-image shard",
                              f"{w['peak_rss_mb']:,.0f} MB peak RSS", "OK" if w["peak_rss_mb"] < 2048 else "OVER"]))
    if val:
        for r in rows_validation(val)[:1]:
            secs = float(re.search(r"\(([\d.]+) s\)", r[2]).group(1))
            lines.append(_md_row(["validate 1,000,000 question rows in under 60 s", f"{secs:.1f} s",
                                  "OK" if secs < 60 else "OVER"]))
    if rel:
        rrows = rows_release(rel)
        for i, r in enumerate(rrows):
            m = re.match(r"([\d.]+)x the boto3 time", r[4])
            if m:
                net = next((x[4] for x in rrows[i + 1:i + 2] if "less its fixed" in x[1]), None)
                status = "OK" if float(m.group(1)) <= 2 else "OVER"
                if status == "OVER" and net:
                    status += f" (fixed per-command cost; {net} without it)"
                lines.append(_md_row([f"dvc push <= 2x plain boto3 ({r[1][10:-1]})", f"{m.group(1)}x", status]))
    q = by.get("questions")
    if q:
        m = re.search(r"^\s*20\s+([\d.]+)", q.output, re.M)
        if m:
            lines.append(_md_row(["question engine >= 200 images/s at 20 instances (one core)",
                                  f"{float(m.group(1)):,.0f} images/s", "OK" if float(m.group(1)) >= 200 else "UNDER"]))
    return lines


def write_report(benches: list[Bench], out: Path, started: datetime, total_s: float) -> None:
    by = {b.name: b for b in benches}
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`bench/run_all.py`) on {started:%Y-%m-%d %H:%M} UTC; the whole run took "
        f"{total_s / 60:.1f} min.",
        "",
        f"* **Machine**: {cpu_model()}, {os.cpu_count()} cores, {ram_gb():.1f} GB RAM, no GPU"
        if not _has_cuda() else f"* **Machine**: {cpu_model()}, {os.cpu_count()} cores, {ram_gb():.1f} GB RAM, GPU",
        f"* **Software**: Python {platform.python_version()}, {platform.system()} {platform.release()}",
        "* Every bench runs in its own process with `OMP_NUM_THREADS=1`, one after the other, against real "
        "local servers (SeaweedFS, Label Studio, Airflow) started on free 127.0.0.1 ports. Another engineer's "
        "tests may share the machine, so treat single figures as +-20 %.",
        "",
        "## Targets",
        "",
        *targets_table(by),
        "",
        "## Throughput and ratio to each stage's baseline",
        "",
        "| stage | measure | throughput | baseline / target | ratio |",
        "|---|---|---|---|---|",
    ]
    for b in benches:
        rows = PARSERS[b.name](b) if b.ok or b.data else []
        if not rows:
            lines.append(_md_row([b.name, "**bench failed or printed nothing parsable**", f"exit {b.rc}",
                                  "see its output below", "-"]))
        for r in rows:
            lines.append(_md_row(r))
    demo = by.get("demo")
    if demo and demo.data.get("stages"):
        d = demo.data
        lines += ["", "## End-to-end demo: peak memory per stage task", "",
                  f"Peak RSS of each Airflow task instance while the demo ran ({d['images']} images, "
                  f"LocalExecutor, sampled every 0.2 s); *task* = the process running the stage code, "
                  "*+ supervisor* = with the executor's supervisor process. Max over mapped instances.", "",
                  "| DAG.task | instances | longest (s) | task RSS (MB) | + supervisor (MB) |",
                  "|---|---|---|---|---|"]
        for name, s in sorted(d["stages"].items()):
            sampled = s["sampled"] > 0
            lines.append(_md_row([name, str(s["count"]), f"{s['max_duration_s']:.1f}",
                                  f"{s['peak_task_rss_mb']:.0f}" if sampled else "-",
                                  f"{s['peak_ti_rss_mb']:.0f}" if sampled else "-"]))
        lines += ["", "Idle memory after start-up, before the run (each service's processes and all their "
                  "children):", "", "| service | PSS (MB) | RSS (MB) | processes |", "|---|---|---|---|"]
        for name, v in d["idle"].items():
            lines.append(_md_row([name, f"{v['pss_mb']:.0f}", f"{v['rss_mb']:.0f}", str(v["processes"])]))
        lines.append(_md_row(["**whole stack**", f"**{d['idle_total_pss_mb']:.0f}**", f"{d['idle_total_rss_mb']:.0f}", ""]))
        lines.append("")
        lines.append(f"Peak RSS of the whole stack during the demo (2 s samples): {d['stack_peak_rss_mb']:.0f} MB.")
    old = out.read_text() if out.exists() else ""
    lines += ["", *scale_section(by, old), "## Notes", "", *NOTES, "", "## Raw output of each bench", ""]
    for b in benches:
        lines += [f"### {b.title}", "", f"`.venv/bin/python {' '.join(b.args)}` — exit {b.rc}, {b.seconds:.0f} s", "",
                  "```text", _clean(b.output), "```", ""]
    out.write_text("\n".join(lines) + "\n")


def _clean(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    keep = [ln for ln in text.splitlines() if ln.strip()]
    if len(keep) > 120:
        keep = keep[:20] + [f"... ({len(keep) - 100} lines left out) ..."] + keep[-80:]
    return "\n".join(keep)


def _has_cuda() -> bool:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return out.returncode == 0 and "GPU" in out.stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of bench names: " + ",".join(b.name for b in BENCHES))
    ap.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    ap.add_argument("--render-only", action="store_true",
                    help=f"rewrite the report from the last run's saved outputs ({LAST_RUN.relative_to(REPO)})")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads(LAST_RUN.read_text())
        benches = [Bench(**b) for b in saved["benches"]]
        write_report(benches, args.out, datetime.fromisoformat(saved["started"]), saved["total_s"])
        print(f"wrote {args.out} from {LAST_RUN}")
        return 0
    only = set(filter(None, args.only.split(",")))
    unknown = only - {b.name for b in BENCHES}
    if unknown:
        ap.error(f"unknown bench: {', '.join(sorted(unknown))}")
    benches = [b for b in BENCHES if (b.name in only if only else b.default)]
    started = datetime.now(UTC)
    t0 = time.monotonic()
    (BENCH / "_work").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-json-") as tmp:
        for b in benches:
            run(b, Path(tmp))
    total = time.monotonic() - t0
    LAST_RUN.write_text(json.dumps({"started": started.isoformat(), "total_s": total,
                                    "benches": [asdict(b) for b in benches]}, default=str))
    write_report(benches, args.out, started, total)
    failed = [b.name for b in benches if not b.ok]
    print(f"\nwrote {args.out} ({total / 60:.1f} min); failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
