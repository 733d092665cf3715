"""Tables from outside: any table that meets the design's contract is read (optional columns may be
absent, integers of any width, large strings); one that breaks it is refused naming the column."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expectations.samples import sample_tables
from pipelines.cli import main
from pipelines.contracts import QUESTIONS, ContractError, conform

pytestmark = pytest.mark.unit


def _design_contract(table: pa.Table) -> pa.Table:
    """What another team writes: no pass_rate, int64 integers, large strings."""
    cols, fields = [], []
    for f in table.schema:
        if f.name == "pass_rate":
            continue
        t = pa.int64() if pa.types.is_integer(f.type) else pa.large_string() if pa.types.is_string(f.type) else f.type
        cols.append(table.column(f.name).cast(t))
        fields.append(pa.field(f.name, t))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


@pytest.fixture
def outside(tmp_path):
    tables = sample_tables(n_images=4, questions_per_image=3, seed=2)
    paths = {}
    for name in ("questions", "manifest", "instances", "annotations", "consensus"):
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(_design_contract(tables[name]), paths[name])
    assert pq.read_schema(paths["questions"]).field("num_hops").type == pa.int64()
    assert "pass_rate" not in pq.read_schema(paths["questions"]).names
    return tables, paths


def test_conform_reads_widths_and_absent_optional_columns_and_names_what_breaks() -> None:
    t = pa.table({"question_id": pa.array(["q"], pa.large_string()), "image_id": ["i"], "question": ["?"],
                  "answer": ["3"], "num_hops": pa.array([4], pa.int64()), "hops": ["[]"], "generator": ["g"],
                  "variant": ["full"]})
    got = conform(t, "questions")
    assert got.schema == QUESTIONS and got.column("pass_rate").null_count == 1
    with pytest.raises(ContractError, match=r"questions: missing required column\(s\) \['answer'\]"):
        conform(t.drop_columns(["answer"]), "questions")
    with pytest.raises(ContractError, match="questions.num_hops"):
        conform(t.set_column(4, "num_hops", pa.array([2**40], pa.int64())), "questions")  # does not fit int32


def test_validate_consensus_and_release_accept_a_design_contract_table(outside, tmp_path) -> None:
    tables, paths = outside
    assert main(["validate", "--suite", "questions", "--data", str(paths["questions"]), "--manifest",
                 str(paths["manifest"]), "--instances", str(paths["instances"]), "--out", str(tmp_path / "v")]) == 0
    assert main(["consensus", "--questions", str(paths["questions"]), "--annotations", str(paths["annotations"]),
                 "--out", str(tmp_path / "c.parquet")]) == 0
    from pipelines.config import ReleaseConfig
    from pipelines.release.snapshot import ReleaseSources, SourceReader, append_part
    from pipelines.release.synthetic import make_inputs

    inputs = make_inputs(tmp_path / "rel", n_images=4, questions_per_image=2, seed=5, accept_rate=1.0)
    for path in (inputs.consensus, inputs.questions, inputs.instances, inputs.manifest):
        pq.write_table(_design_contract(pq.read_table(path)), path)
    sources = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                             str(inputs.manifest))
    part = append_part(sources, tmp_path / "data", ReleaseConfig(), SourceReader())
    assert part.released == inputs.accepted == 8


def test_a_table_that_breaks_the_contract_is_refused_naming_the_column(outside, tmp_path, capsys) -> None:
    _, paths = outside
    broken = pq.read_table(paths["questions"]).drop_columns(["answer"])
    pq.write_table(broken, tmp_path / "broken.parquet")
    assert main(["consensus", "--questions", str(tmp_path / "broken.parquet"), "--annotations",
                 str(paths["annotations"]), "--out", str(tmp_path / "c.parquet")]) == 2  # input error
    assert "error: questions: missing required column(s) ['answer']" in capsys.readouterr().err
