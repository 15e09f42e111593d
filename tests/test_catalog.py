from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.catalog import load_catalog
from indexer.product import Product
from relevance.errors import CatalogError
from reranker.text import analyse
from tests.conftest import BAD_CATALOG


def dead_letters(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_rows_go_to_dead_letter_with_line_and_reason(tmp_path: Path) -> None:
    loaded = load_catalog(BAD_CATALOG, tmp_path / "dead.jsonl")
    reasons = {record["line"]: record["reason"] for record in dead_letters(loaded.dead_letter_path)}
    expected = {
        3: "invalid JSON",
        4: "expected a JSON object",
        5: "product_id: Field required",
        6: "title: Field required",
        7: "title: String should have at least 1 character",
        8: "price: Input should be greater than or equal to 0",
        9: "price: Input should be a valid number",
        10: "currency: String should match pattern",
        11: "rating: Input should be less than or equal to 5",
        12: "rating_count: Input should be greater than or equal to 0",
        13: "category: Value error, category path 'Tools >  > Saws' has an empty segment",
        14: "attributes: Input should be a valid dictionary",
        15: "in_stock: Input should be a valid boolean",
        16: "product_id: String should match pattern",
        17: "popularity: Value error, must be a finite number",
    }
    assert set(reasons) == set(expected)
    for line, fragment in expected.items():
        assert fragment in reasons[line], (line, reasons[line])


def test_summary_counts_add_up_and_last_duplicate_wins(tmp_path: Path) -> None:
    loaded = load_catalog(BAD_CATALOG, tmp_path / "dead.jsonl")
    summary = loaded.summary
    assert (summary.read, summary.indexed, summary.rejected, summary.duplicates) == (19, 3, 15, 1)
    assert summary.read == summary.indexed + summary.rejected + summary.duplicates
    by_id = {p.product_id: p for p in loaded.products}
    assert by_id["ok1"].title == "Cordless Drill (newer row)" and by_id["ok1"].price == 12
    assert summary.ignored_fields == {"unknown_column"}


def test_csv_catalog_with_empty_cells_and_json_attributes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "title", "price", "in_stock", "attributes", "category"])
        writer.writerow(["1", "Cordless Drill", "99.5", "yes", '{"color": "yellow"}', "Tools>Drills"])
        writer.writerow(["2", "Drill Bit", "", "no", "", ""])
        writer.writerow(["3", "Saw", "12", "true", "{not json", ""])
        writer.writerow(["4", "Hammer", "1", "true", "", "", "extra cell"])
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    products = {p.product_id: p for p in loaded.products}
    assert products["1"].price == 99.5 and products["1"].in_stock is True
    assert products["1"].attributes == {"color": "yellow"}
    assert products["1"].category == "Tools > Drills"
    assert products["2"].price is None and products["2"].in_stock is False
    letters = {record["line"]: record["reason"] for record in dead_letters(loaded.dead_letter_path)}
    assert "attributes: Value error, must be a JSON object" in letters[3]
    assert "cells" in letters[4]
    assert loaded.summary.read == 4 and loaded.summary.rejected == 2


def test_html_character_references_in_text_fields_are_decoded(tmp_path: Path) -> None:
    # Home Depot's titles carry "&#39;", "&amp;" and "&quot;" (1,247 of 54,667); undecoded,
    # "Baker&#39;s" reads as the number 39 and "3/4&quot;" loses its inch.
    path = tmp_path / "catalog.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_id", "title", "brand", "category", "description"])
        writer.writerow(
            ["1", "Corner Baker&#39;s Rack", "Briggs &amp; Stratton", "Tools &gt; Saws", "3/4&quot; &#x2013; steel"]
        )
        writer.writerow(["2", "Black &notched AT&T R&D &bogus; &amp", "&nbsp;", "", ""])
        writer.writerow(["3", " &nbsp; ", "", "", ""])
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    products = {p.product_id: p for p in loaded.products}
    first = products["1"]
    assert (first.title, first.brand, first.category) == ("Corner Baker's Rack", "Briggs & Stratton", "Tools > Saws")
    assert first.category_segments == ["Tools", "Saws"]
    assert first.description == '3/4" \u2013 steel'
    assert analyse(first.title).numbers == frozenset()
    assert analyse(first.description).quantities == frozenset({(0.75, "in")})
    # Only complete references: no legacy "&not" without its semicolon, no unknown names.
    assert products["2"].title == "Black &notched AT&T R&D &bogus; &amp"
    assert products["2"].brand is None, "an optional field that decodes to blanks is absent"
    letters = {record["line"]: record["reason"] for record in dead_letters(loaded.dead_letter_path)}
    assert "title: Value error, is blank once its HTML character references are decoded" in letters[3]


def test_markup_in_descriptions_is_reduced_to_its_text(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    rows = [
        {
            "product_id": "1",
            "title": "Drill",
            "description": "<p>Cordless <b>drill</b></p><ul><li>20V</li><li>3/4&quot; chuck</li></ul>",
        },
        {
            "product_id": "2",
            "title": "Saw",
            "description": "<style>p{color:red}</style><script>track()</script>Saw<br/>blade<!-- x -->kit",
        },
        {"product_id": "3", "title": "Pipe", "description": "For pipes < 2 in. and a<3 &lt;b&gt; AT&T &notched"},
        {"product_id": "4", "title": "Bit", "description": "<p> </p>"},
        {"product_id": "5", "title": "<b>Not</b> stripped", "brand": "<i>Kept</i>"},
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    products = {p.product_id: p for p in load_catalog(path, tmp_path / "dead.jsonl").products}
    assert products["1"].description == 'Cordless drill 20V 3/4" chuck'
    assert analyse(products["1"].description).quantities == {(20.0, "v"), (0.75, "in")}, "tags split no quantity"
    assert products["2"].description == "Saw blade kit", "script and style bodies are not text; tags separate words"
    assert products["3"].description == "For pipes < 2 in. and a<3 <b> AT&T &notched", "no tag: the text as written"
    assert products["4"].description is None, "a description that was only markup is absent"
    assert (products["5"].title, products["5"].brand) == ("<b>Not</b> stripped", "<i>Kept</i>"), "descriptions only"


def test_parquet_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.parquet"
    table = pa.table({"product_id": ["a", "b", None], "title": ["Drill", "Bit", "Orphan"], "price": [1.0, None, 2.0]})
    pq.write_table(table, path)
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["a", "b"]
    assert [r["line"] for r in dead_letters(loaded.dead_letter_path)] == [3]


def test_unreadable_catalogs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.jsonl", tmp_path / "dead.jsonl")
    odd = tmp_path / "catalog.xml"
    odd.write_text("<products/>")
    with pytest.raises(CatalogError, match="cannot tell the format"):
        load_catalog(odd, tmp_path / "dead.jsonl")


def test_a_products_text_fingerprint_follows_its_text_through_copies() -> None:
    product = Product(product_id="p1", title="Cordless Drill", description="18V")
    fingerprint = product.text_fingerprint  # cached on the object from here on
    assert Product(product_id="p1", title="Cordless Drill", description="18V").text_fingerprint == fingerprint
    assert product.model_copy().text_fingerprint == fingerprint
    assert product.model_copy(update={"price": 99.0}).text_fingerprint == fingerprint, "price is not text"
    assert product.model_copy(update={"title": "Corded Drill"}).text_fingerprint != fingerprint
    assert product.model_copy(update={"description": "20V"}).text_fingerprint != fingerprint
    assert product == Product(product_id="p1", title="Cordless Drill", description="18V"), "the cache is not a field"
    assert "text_fingerprint" not in product.model_dump()
