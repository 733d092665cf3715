"""The dataset card served on the HopChain page shows its YAML metadata header as a table, not stray text."""

from __future__ import annotations

import pytest

from pipelines.release.platform import _markdown_page

pytestmark = pytest.mark.unit


def test_the_card_header_is_a_metadata_table_and_the_body_is_html() -> None:
    md = ("---\nconfigs:\n- config_name: default\n  data_files: data/*.parquet\nlicense: cc-by-4.0\n---\n"
          "# HopChain v1\n\nQuestions <b>released</b>: 17\n")
    page = _markdown_page(md, "v1<x>")
    assert "<table class='meta'>" in page and "<th>configs</th>" in page and "<th>license</th>" in page
    assert "config_name: default" in page
    assert "---" not in page  # the front matter's fences are not shown as text
    assert "<h1>HopChain v1</h1>" in page
    assert "<b>released</b>" not in page and "&lt;b&gt;released&lt;/b&gt;" in page  # card text is escaped
    assert "<title>v1&lt;x&gt;</title>" in page


def test_hostile_metadata_and_tags_come_out_escaped() -> None:
    md = "---\n\"<script>k\": \"v' onmouseover='alert(1)\"\n---\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n"
    page = _markdown_page(md, "<script>alert('t')</script>")
    assert "<script>" not in page and "<img src=x" not in page
    assert "<title>&lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt;</title>" in page
    assert "<th>&lt;script&gt;k</th>" in page and "v&#39; onmouseover=&#39;alert(1)" in page
    assert 'href="javascript:' not in page  # mistune refuses the scheme
