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
        17: "popularity: Input should be a finite number",
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
    assert "attributes: Value error, must be a JSON object" in letters[4], "physical lines: the header is line 1"
    assert letters[5] == "row has 7 cells, header has 6"
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
    assert "title: Value error, is blank once its HTML character references are decoded" in letters[4]


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


def write_bytes(path: Path, text: str, *, raw: bytes = b"") -> Path:
    path.write_bytes(text.encode("utf-8") + raw)
    return path


def test_csv_quote_left_open_to_the_end_sets_its_line_aside_and_reads_the_rows_below(tmp_path: Path) -> None:
    rows = "".join(f"q{n},title number {n},{n}\n" for n in range(3, 10))
    path = write_bytes(tmp_path / "quote.csv", 'product_id,title,price\nq1,fine,1\nq2,"bad quote title,2\n' + rows)
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["q1"] + [f"q{n}" for n in range(3, 10)]
    assert [p.title for p in loaded.products][-1] == "title number 9"
    assert (loaded.summary.read, loaded.summary.rejected, loaded.summary.indexed) == (9, 1, 8)
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["line"] == 3 and letter["row"] == 'q2,"bad quote title,2'
    assert letter["reason"].startswith("title: a quote opens the cell and never closes (it ran on over lines 3-10")


def test_csv_quote_left_open_in_a_description_loses_no_row(tmp_path: Path) -> None:
    # The lenient reader ran q1's description on to q3's opening quote and indexed q1
    # with q2 and q3 inside it: q2 and q3 were lost without a word.
    path = write_bytes(
        tmp_path / "description.csv",
        "product_id,title,description,price\n"
        'q1,Drill,"Cordless drill, 18 V,5\n'
        "q2,Saw,Hand saw,6\n"
        'q3,Pipe,"Copper pipe, 3/4"" wide",7\n'
        'q4,Lamp,"Desk lamp\nwith a second line",8\n',
    )
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    by_id = {p.product_id: p for p in loaded.products}
    assert sorted(by_id) == ["q2", "q3", "q4"]
    assert by_id["q3"].description == 'Copper pipe, 3/4" wide' and by_id["q3"].price == 7
    assert by_id["q4"].description == "Desk lamp\nwith a second line", "a quoted cell may still span lines"
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["line"] == 2 and letter["row"] == 'q1,Drill,"Cordless drill, 18 V,5'
    assert letter["reason"].startswith("description: a quote opens the cell and never closes (it ran on over lines 2-4")
    assert loaded.summary.read == loaded.summary.indexed + loaded.summary.rejected + loaded.summary.duplicates


def test_a_misplaced_quote_within_one_csv_line_is_read_as_before(tmp_path: Path) -> None:
    # csv's lenient reading of an undoubled quote inside a quoted cell, kept as it was.
    path = write_bytes(tmp_path / "inch.csv", 'product_id,title,price\n1,"12" pipe",5\n2,Saw,6\n')
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [(p.product_id, p.title, p.price) for p in loaded.products] == [("1", '12 pipe"', 5), ("2", "Saw", 6)]
    assert loaded.summary.rejected == 0


def test_a_title_line_break_the_strict_reader_cannot_catch_is_still_dead_lettered(tmp_path: Path) -> None:
    # The next quote in the file closes a cell (a bare inch mark), so no strict error: the
    # title then holds a line break, which titles never do.
    path = write_bytes(tmp_path / "inch.csv", 'product_id,title,price\nq1,"Drill,1\nq2,Pipe 3/4 in",2\nq3,Saw,3\n')
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["q3"]
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["line"] == 2 and letter["reason"].startswith("title holds a line break: probably an unmatched quote")
    assert "q2,Pipe 3/4 in" in letter["row"]["title"], "the swallowed row is kept in the dead letter"


def test_csv_rows_with_too_few_or_too_many_cells_are_dead_lettered(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "cells.csv", "product_id,title,price,brand\n1,Drill,9,Acme\nx2,short row\n3,Saw,1,B,extra\n"
    )
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["1"]
    letters = {record["line"]: record for record in dead_letters(loaded.dead_letter_path)}
    assert letters[3]["reason"] == "row has 2 cells, header has 4"
    assert letters[3]["row"] == ["x2", "short row"]
    assert letters[4]["reason"] == "row has 5 cells, header has 4"


@pytest.mark.parametrize(
    ("name", "header", "row"),
    [("bad.jsonl", "", '{"product_id": "m30", "title": "latin1 caf'), ("bad.csv", "product_id,title\n", "x5,caf")],
)
def test_rows_that_are_not_utf8_are_dead_lettered_not_garbled(tmp_path: Path, name: str, header: str, row: str) -> None:
    good = '{"product_id": "ok", "title": "Caf\u00e9"}\n' if name.endswith("jsonl") else "ok,Caf\u00e9\n"
    path = tmp_path / name
    path.write_bytes(
        header.encode() + good.encode() + row.encode() + b"\xe9" + (b' bytes"}\n' if header == "" else b"\n")
    )
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [(p.product_id, p.title) for p in loaded.products] == [("ok", "Caf\u00e9")]
    text = loaded.dead_letter_path.read_bytes().decode("utf-8")  # the dead letter itself stays UTF-8
    (letter,) = [json.loads(line) for line in text.splitlines()]
    assert letter["reason"] == "title: not valid UTF-8 (byte 0xe9); save the catalog as UTF-8"
    assert "caf\ufffd" in json.dumps(letter["row"], ensure_ascii=False)


def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path: Path) -> None:
    csv_path = write_bytes(tmp_path / "bom.csv", "\ufeffproduct_id,title\n1,Drill\n2,Saw\n")
    jsonl_path = write_bytes(tmp_path / "bom.jsonl", '\ufeff{"product_id": "1", "title": "Drill"}\n')
    for path in (csv_path, jsonl_path):
        loaded = load_catalog(path, tmp_path / "dead.jsonl")
        assert loaded.summary.rejected == 0 and loaded.products[0].product_id == "1", path


def test_long_csv_cells_are_read_and_a_runaway_cell_fails_naming_the_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "big.csv", f"product_id,title,description\n1,Drill,{'x' * 200_000}\n2,Saw,short\n")
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["2"]
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["line"] == 2 and letter["reason"].startswith("description: String should have at most 50000")
    runaway = write_bytes(tmp_path / "runaway.csv", f'product_id,title\n1,Drill\n2,"open {"y" * 17_000_000}\n')
    with pytest.raises(CatalogError, match=r"^cannot read CSV file .*runaway.csv at line 3: field larger than"):
        load_catalog(runaway, tmp_path / "dead2.jsonl")
    # Over many lines the open cell is set aside like any quote left open, and the rest is read.
    lines = "".join(f"{'z' * 1_000_000}\n" for _ in range(17))
    spanning = write_bytes(tmp_path / "spanning.csv", f'product_id,title\n1,Drill\n2,"open\n{lines}3,Saw\n')
    loaded = load_catalog(spanning, tmp_path / "dead3.jsonl")
    assert [p.product_id for p in loaded.products] == ["1", "3"]
    letters = dead_letters(loaded.dead_letter_path)
    assert letters[0]["line"] == 3 and "past the cell limit" in letters[0]["reason"]
    assert [letter["reason"] for letter in letters[1:]] == ["row has 1 cells, header has 2"] * 17


def test_a_corrupt_parquet_page_fails_with_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    table = pa.table({"product_id": [str(n) for n in range(20)], "title": [f"Title {n}" for n in range(20)]})
    pq.write_table(table, path, row_group_size=10)
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\xff" * 16  # the second row group's page header; the footer stays intact
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path, tmp_path / "dead.jsonl")
    assert caught.value.detail.startswith(f"cannot read Parquet file {path}: ")
    assert caught.value.detail.isprintable(), "one line, no control characters"


def test_booleans_are_not_numbers_and_a_title_needs_a_visible_character(tmp_path: Path) -> None:
    rows = [
        {"product_id": "1", "title": "Drill", "price": True},
        {"product_id": "2", "title": "Drill", "rating_count": False},
        {"product_id": "3", "title": "\u200b"},
        {"product_id": "4", "title": "&#8203;\u00ad"},
        {"product_id": "5", "title": "\u200bDrill", "price": 3},
    ]
    path = write_bytes(tmp_path / "c.jsonl", "\n".join(json.dumps(row) for row in rows))
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["5"]
    reasons = {record["line"]: record["reason"] for record in dead_letters(loaded.dead_letter_path)}
    assert reasons == {
        1: "price: Value error, must be a number, not true (got True)",
        2: "rating_count: Value error, must be a number, not false (got False)",
        3: r"title: Value error, has no visible character (got '\u200b')",  # repr shows what is there
        4: r"title: Value error, has no visible character (got '&#8203;\xad')",
    }


def test_csv_header_names_are_trimmed_and_case_blind_and_may_not_repeat(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "case.csv", "Product_ID, Title ,Product Type\n1,Drill,tool\n")
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [(p.product_id, p.title) for p in loaded.products] == [("1", "Drill")]
    assert loaded.summary.ignored_fields == {"product_type"}
    twice = write_bytes(tmp_path / "twice.csv", "product_id,title,Title\n1,Drill,Saw\n")
    with pytest.raises(CatalogError, match=r"names column 'title' more than once \(\['title', 'Title'\]\)"):
        load_catalog(twice, tmp_path / "dead.jsonl")


def test_dead_letter_reasons_read_well(tmp_path: Path) -> None:
    rows = [
        '{"product_id": "1", "title": "Drill", "price": NaN}',
        json.dumps({"product_id": "2", "title": "x" * 25_000}),
        '{"product_id": "3", "title": "Trunc',
    ]
    path = write_bytes(tmp_path / "c.jsonl", "\n".join(rows))
    reasons = [r["reason"] for r in dead_letters(load_catalog(path, tmp_path / "dead.jsonl").dead_letter_path)]
    assert reasons[0] == "price: Input should be a finite number (got nan)"
    assert reasons[1].startswith("title: String should have at most 1000 characters (got 'xxx")
    assert len(reasons[1]) < 300, "the reason quotes a long value's start and end; the row has it whole"
    assert reasons[2] == "invalid JSON: Unterminated string starting at column 30"


def test_dead_letter_files_are_opened_exclusively(tmp_path: Path) -> None:
    catalog = write_bytes(tmp_path / "c.jsonl", '{"title": "no id"}\n')
    earlier = write_bytes(tmp_path / "dead.jsonl", "an earlier job's dead letters\n")
    with pytest.raises(FileExistsError):
        load_catalog(catalog, earlier, exclusive=True)
    assert earlier.read_text() == "an earlier job's dead letters\n"


def test_rows_that_validate_also_read_back_from_the_index(tmp_path: Path) -> None:
    # The index validates its own products again when it reads them back: a row accepted
    # here but refused there stopped the whole job. NaN has no JSON form (it was stored as
    # null); "A>B" grows to "A > B" when normalised, past the limit.
    rows = [
        '{"product_id": "1", "title": "Drill", "attributes": {"length_m": NaN}}',
        '{"product_id": "2", "title": "Saw", "attributes": {"length_m": Infinity}}',
        json.dumps({"product_id": "3", "title": "Hammer", "category": ">".join(["Tools"] * 160)}),
        json.dumps({"product_id": "4", "title": "Lamp", "category": " > ".join(["Tools"] * 120)}),
        json.dumps({"product_id": "5", "title": "Sofa", "attributes": {"length_m": 2.5}}),
    ]
    path = write_bytes(tmp_path / "roundtrip.jsonl", "\n".join(rows) + "\n")
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["4", "5"]
    for product in loaded.products:
        assert Product.model_validate_json(product.model_dump_json()) == product
    reasons = {letter["line"]: letter["reason"] for letter in dead_letters(loaded.dead_letter_path)}
    assert (
        reasons[1]
        == "attributes: Value error, 'length_m' is nan; attribute numbers must be finite (got {'length_m': nan})"
    )
    assert reasons[2].startswith("attributes: Value error, 'length_m' is inf; attribute numbers must be finite")
    assert reasons[3].startswith("category: Value error, is 1277 characters written as 'A > B', more than 1000")


def test_json_the_parser_cannot_take_is_the_rows_fault_not_the_jobs(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    rows = [
        '{"product_id": "1", "title": "Drill", "price": ' + "9" * 5000 + "}",
        '{"product_id": "2", "title": "Saw", "attributes": ' + deep + "}",
        '{"product_id": "3", "title": "Hammer"}',
    ]
    jsonl = write_bytes(tmp_path / "odd.jsonl", "\n".join(rows) + "\n")
    loaded = load_catalog(jsonl, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["3"]
    reasons = [letter["reason"] for letter in dead_letters(loaded.dead_letter_path)]
    assert reasons[0].startswith("invalid JSON: Exceeds the limit (4300 digits)")
    assert reasons[1].startswith("invalid JSON: maximum recursion depth exceeded")
    cell = deep.replace('"', '""')
    csv_path = write_bytes(tmp_path / "odd.csv", f'product_id,title,attributes\n1,Drill,"{cell}"\n2,Saw,\n')
    loaded = load_catalog(csv_path, tmp_path / "dead2.jsonl")
    assert [p.product_id for p in loaded.products] == ["2"]
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["reason"].startswith("attributes: Value error, must be a JSON object: maximum recursion depth")


@pytest.mark.parametrize("suffix", ["json", "jsonl"])
def test_a_json_array_document_is_read_row_by_row_with_each_rows_line(tmp_path: Path, suffix: str) -> None:
    document = (
        "\ufeff[\n"
        '  {"product_id": "p1", "title": "Red cordless drill"},\n'
        '  {"product_id": "p2",\n   "title": "Blue velvet sofa"},\n'
        "  5,\n"
        '  {"product_id": "p3", "title": ""},\n'
        '  {"product_id": "p4", "title": "Brass desk lamp"}\n'
        "]\n"
    )
    path = write_bytes(tmp_path / f"array.{suffix}", document)
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["p1", "p2", "p4"]
    assert [(letter["line"], letter["reason"].split(":")[0]) for letter in dead_letters(loaded.dead_letter_path)] == [
        (5, "expected a JSON object, got int"),
        (6, "title"),
    ]
    assert loaded.summary.read == 5


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ('[\n{"product_id": "p1", "title": "Drill"},\n]', ":3: not a valid JSON array at column 1: Expecting value"),
        ('[\n{"product_id": "p1", "title": "Drill"}\n{"product_id": "p2"}]', ":3: not a valid JSON array at column 1"),
        ('[{"product_id": "p1", "title": "Drill"}', ":1: not a valid JSON array at column 40: the array is never"),
        ('[{"product_id": "p1", "title": "Drill"}] []', ":1: not a valid JSON array at column 42: text after"),
    ],
)
def test_a_json_array_that_does_not_parse_stops_the_job_naming_where(tmp_path: Path, document: str, where: str) -> None:
    path = write_bytes(tmp_path / "broken.json", document)
    with pytest.raises(CatalogError) as refused:
        load_catalog(path, tmp_path / "dead.jsonl")
    assert f"{path}{where}" in refused.value.detail


def test_blank_lines_before_a_csv_header_are_skipped(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "blank.csv", "\n\r\nproduct_id,title\n1,cordless drill\n\n2,claw hammer\n")
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["1", "2"]
    assert loaded.summary.rejected == 0


def test_a_quote_left_open_on_the_last_csv_line_is_dead_lettered(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "last.csv", 'product_id,title,description\n1,Drill,fine\n2,Saw,"unterminated\n')
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["1"]
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["line"] == 3 and letter["reason"].startswith("description: a quote opens the cell and never closes")


def test_parquet_columns_are_named_as_in_csv_and_may_not_repeat(tmp_path: Path) -> None:
    path = tmp_path / "names.parquet"
    pq.write_table(pa.table({"Product_ID": ["1"], " Title ": ["Drill"], "price": [5.0]}), path)
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [(p.product_id, p.title, p.price) for p in loaded.products] == [("1", "Drill", 5.0)]
    twice = pa.Table.from_arrays(
        [pa.array(["1"]), pa.array(["Drill"]), pa.array([5.0]), pa.array([-3.0])],
        names=["product_id", "title", "price", "Price"],
    )
    pq.write_table(twice, tmp_path / "twice.parquet")
    with pytest.raises(CatalogError, match=r"names column 'price' more than once \(\['price', 'Price'\]\)"):
        load_catalog(tmp_path / "twice.parquet", tmp_path / "dead2.jsonl")


def test_parquet_struct_and_map_attributes_and_float32_numbers(tmp_path: Path) -> None:
    # A struct column fills every row's absent keys with null; a map arrives as key-value
    # pairs; a float32 19.99 is 19.989999771118164 as a Python float.
    rows = [
        {"product_id": "1", "title": "Drill", "attributes": {"color": "red"}},
        {"product_id": "2", "title": "Saw", "attributes": {"weight_kg": 1.5}},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "struct.parquet")
    loaded = load_catalog(tmp_path / "struct.parquet", tmp_path / "dead.jsonl")
    assert [p.attributes for p in loaded.products] == [{"color": "red"}, {"weight_kg": 1.5}]
    mapped = pa.table(
        {
            "product_id": ["1", "2"],
            "title": ["Drill", "Saw"],
            "attributes": pa.array(
                [[("color", "red")], [("size", "XL"), ("fit", None)]], pa.map_(pa.string(), pa.string())
            ),
            "price": pa.array([19.99, None], pa.float32()),
            "rating": pa.array([4.7, 3.3], pa.float16()),
        }
    )
    pq.write_table(mapped, tmp_path / "map.parquet")
    loaded = load_catalog(tmp_path / "map.parquet", tmp_path / "dead2.jsonl")
    assert loaded.summary.rejected == 0
    assert [p.attributes for p in loaded.products] == [{"color": "red"}, {"size": "XL"}]
    assert [p.price for p in loaded.products] == [19.99, None]
    assert [p.rating for p in loaded.products] == [4.7, 3.3]


def test_dead_letters_are_strict_json(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"product_id": ["1", "2"], "title": ["Drill", "Saw"], "price": [float("nan"), 5.0]}),
        tmp_path / "nan.parquet",
    )
    loaded = load_catalog(tmp_path / "nan.parquet", tmp_path / "dead.jsonl")
    assert [p.product_id for p in loaded.products] == ["2"]
    line = loaded.dead_letter_path.read_text().splitlines()[0]
    letter = json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in the dead letter"))
    assert letter["row"]["price"] == "nan"


@pytest.mark.parametrize("hidden", ["\x00", "\u200b", "\u200e", "\ufeff", "\x7f"])
def test_a_product_id_with_an_invisible_character_is_dead_lettered(tmp_path: Path, hidden: str) -> None:
    rows = [{"product_id": f"a{hidden}1", "title": "Drill"}, {"product_id": "a1", "title": "Saw"}]
    path = write_bytes(tmp_path / "ids.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_catalog(path, tmp_path / "dead.jsonl")
    assert [p.title for p in loaded.products] == ["Saw"], "not a second product that looks like a1"
    (letter,) = dead_letters(loaded.dead_letter_path)
    assert letter["reason"].startswith(f"product_id: Value error, holds the invisible character U+{ord(hidden):04X}")


@pytest.mark.parametrize(("encoding", "name"), [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")])
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_utf16_or_utf32_file_is_refused_as_a_whole_naming_its_encoding(
    tmp_path: Path, encoding: str, name: str, suffix: str
) -> None:
    text = '{"product_id": "1", "title": "Drill"}\n' if suffix == "jsonl" else "product_id,title\n1,Drill\n"
    path = tmp_path / f"unicode.{suffix}"
    mark = {"utf-16-be": b"\xfe\xff"}.get(encoding, b"")  # utf-16 and utf-32 write their own mark
    path.write_bytes(mark + text.encode(encoding))
    with pytest.raises(CatalogError, match=f"is {name} text .*; save the catalog as UTF-8"):
        load_catalog(path, tmp_path / "dead.jsonl")
