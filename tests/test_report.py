from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from relevance.comparison import Comparison, compare
from relevance.report import render_table, to_json, write_html

QUERY = 'drill <script>alert("x")</script> & bits'


def _per_query(values: np.ndarray, offset: float) -> dict[str, dict[str, float]]:
    return {
        "ndcg@10": {f"q{i}": float(v) for i, v in enumerate(values)},
        "map": {f"q{i}": float(min(1.0, v + offset)) for i, v in enumerate(values)},
    }


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    rng = np.random.default_rng(5)
    b = rng.uniform(0.2, 0.8, size=30)
    a = b + rng.uniform(0.0, 0.2, size=30)
    a[3] = b[3] - 0.5  # one big loss for A
    return compare("bm25 <v2>", _per_query(a, 0.1), "knn", _per_query(b, 0.0), {"q3": QUERY}, samples=500)


def test_table_shows_metrics_means_and_tests(comparison: Comparison) -> None:
    text = render_table(comparison)
    assert "\x1b[" not in text  # plain text, no colour codes
    assert "bm25 <v2>" in text and "knn" in text and "30 queries" in text
    boot = comparison["bootstrap"]["ndcg@10"]
    wl = comparison["wins_losses"]["ndcg@10"]
    line = next(row for row in text.splitlines() if "ndcg@10" in row)
    for cell in (
        f"{comparison['a']['means']['ndcg@10']:.4f}",
        f"{comparison['b']['means']['ndcg@10']:.4f}",
        f"{boot['difference']:+.4f}",
        f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]",
        f"{boot['p_value']:.4f}",
        f"{wl['wins']}/{wl['losses']}/{wl['ties']}",
    ):
        assert cell in line
    assert any("map" in row for row in text.splitlines())


def test_table_for_one_system_has_only_its_means() -> None:
    text = render_table(compare("bm25", {"map": {"q1": 0.25, "q2": 0.5}}))
    assert "0.3750" in text and "2 queries" in text and "CI" not in text


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    ]


def test_html_report_is_self_contained_with_plots_and_escaped_text(comparison: Comparison, tmp_path: Path) -> None:
    page = write_html(comparison, tmp_path / "report.html").read_text(encoding="utf-8")
    images = _images(page)
    assert len(images) == 2 and page.count("<img ") == 2
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 5000 for image in images)
    assert "drill &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; bits" in page
    assert "<script" not in page and "bm25 &lt;v2&gt;" in page and "<v2>" not in page
    assert not re.search(r"(src|href)=['\"](?!data:)", page)  # no external asset
    assert "30 queries" in page
    # the one big loss is listed first among A's losses
    losses = page.split("Biggest losses")[1]
    assert losses.index("q3") < losses.index("</table>")


def test_html_report_for_one_system_has_one_plot(tmp_path: Path) -> None:
    alone = compare("bm25", {"ndcg@10": {"q1": 0.5, "q2": 1.0}})
    page = write_html(alone, tmp_path / "alone.html").read_text(encoding="utf-8")
    assert len(_images(page)) == 1 and "Biggest" not in page


def test_json_is_serialisable_and_can_drop_per_query_values(comparison: Comparison) -> None:
    full = json.loads(json.dumps(to_json(comparison)))
    assert full["a"]["per_query"]["ndcg@10"]["q0"] == comparison["a"]["per_query"]["ndcg@10"]["q0"]
    small = to_json(comparison, per_query=False)
    assert "per_query" not in small["a"] and "per_query" not in small["b"]
    assert "per_query" in comparison["a"]  # the comparison itself is left alone
    assert small["bootstrap"] == comparison["bootstrap"]
