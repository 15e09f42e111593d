"""Render a ``Comparison``: a JSON-ready dict, a terminal table, a self-contained HTML file.

The HTML report carries its plots as base64 PNGs, so it is one file with no external
asset. matplotlib draws through its object-oriented API on an Agg canvas (no pyplot, no
global backend state) and is imported only when a report is written.
"""

from __future__ import annotations

import base64
import copy
import html
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from relevance.comparison import Comparison, QueryDeltaDict

_COLOURS = ("#4c72b0", "#dd8452")
_TIE = 1e-9  # wins_losses' default epsilon


def to_json(comparison: Comparison, *, per_query: bool = True) -> dict[str, Any]:
    """A deep copy of ``comparison`` for ``json.dumps``; ``per_query=False`` drops the per-query values."""
    data: dict[str, Any] = copy.deepcopy(dict(comparison))
    if not per_query:
        for system in (data["a"], data["b"]):
            if system is not None:
                system.pop("per_query")
    return data


def _rows(comparison: Comparison) -> list[list[str]]:
    """One row of formatted cells per metric: means, then difference, CI, p-value and W/L/T with B."""
    a, b = comparison["a"], comparison["b"]
    rows = []
    for metric in comparison["metrics"]:
        row = [metric, f"{a['means'][metric]:.4f}"]
        if b is not None:
            boot, wl = comparison["bootstrap"][metric], comparison["wins_losses"][metric]
            row += [
                f"{b['means'][metric]:.4f}",
                f"{boot['difference']:+.4f}",
                f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]",
                f"{boot['p_value']:.4f}",
                f"{wl['wins']}/{wl['losses']}/{wl['ties']}",
            ]
        rows.append(row)
    return rows


def _headers(comparison: Comparison) -> list[str]:
    a, b = comparison["a"], comparison["b"]
    if b is None:
        return ["metric", a["name"]]
    level = f"{comparison['confidence']:.0%}"
    return ["metric", a["name"], b["name"], "A - B", f"{level} CI", "p", "W/L/T"]


def _title(comparison: Comparison) -> str:
    a, b = comparison["a"], comparison["b"]
    systems = a["name"] if b is None else f"A = {a['name']} vs B = {b['name']}"
    return f"{systems} ({comparison['queries']} queries)"


def render_table(comparison: Comparison, *, width: int = 120) -> str:
    """The metric table as plain text (no colour codes), titled with the systems and the query count."""
    table = Table(title=_title(comparison))
    for i, header in enumerate(_headers(comparison)):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in _rows(comparison):
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def metric_chart(comparison: Comparison) -> str:
    """Base64 PNG: mean per metric for A (and B), and with B the difference A - B with its CI."""
    from matplotlib.figure import Figure

    metrics, a, b = comparison["metrics"], comparison["a"], comparison["b"]
    positions = list(range(len(metrics)))
    figure = Figure(figsize=(11 if b else 6, 4), layout="constrained")
    means = figure.add_subplot(1, 2 if b else 1, 1)
    systems = [a] if b is None else [a, b]
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        offset = [p + (i - (len(systems) - 1) / 2) * width for p in positions]
        means.bar(offset, [system["means"][m] for m in metrics], width, label=system["name"], color=_COLOURS[i])
    means.set_xticks(positions, metrics)
    means.set_ylabel(f"mean over {comparison['queries']} queries")
    means.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(systems), frameon=False)
    if b is not None:
        boot = [comparison["bootstrap"][m] for m in metrics]
        diff = figure.add_subplot(1, 2, 2)
        errors = [[r["difference"] - r["ci_low"] for r in boot], [r["ci_high"] - r["difference"] for r in boot]]
        diff.bar(positions, [r["difference"] for r in boot], 0.6, yerr=errors, capsize=4, color="#8172b3")
        diff.axhline(0, color="black", linewidth=0.8)
        diff.set_xticks(positions, metrics)
        diff.set_title(f"{a['name']} - {b['name']}, {comparison['confidence']:.0%} bootstrap CI")
    return _png(figure)


def delta_chart(comparison: Comparison) -> str:
    """Base64 PNG: the headline metric's per-query difference A - B, sorted.

    Raises:
        ValueError: the comparison has no system B.
    """
    from matplotlib.figure import Figure

    a, b, metric = comparison["a"], comparison["b"], comparison["headline"]
    if b is None:
        raise ValueError("a per-query delta chart needs two systems")
    deltas = sorted(a["per_query"][metric][q] - b["per_query"][metric][q] for q in a["per_query"][metric])
    wl = comparison["wins_losses"][metric]
    figure = Figure(figsize=(11, 3.5), layout="constrained")
    axes = figure.add_subplot()
    colours = ["#55a868" if d > _TIE else "#c44e52" if d < -_TIE else "#999999" for d in deltas]
    axes.bar(range(len(deltas)), deltas, 1.0, color=colours)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xlabel("queries, sorted by difference")
    axes.set_ylabel(f"{metric}: {a['name']} - {b['name']}")
    axes.set_title(f"{wl['wins']} wins, {wl['losses']} losses, {wl['ties']} ties for {a['name']}")
    return _png(figure)


def _table_html(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _deltas_html(comparison: Comparison, title: str, deltas: list[QueryDeltaDict]) -> str:
    texts = comparison["query_texts"]
    a, b = comparison["a"]["name"], comparison["b"]["name"] if comparison["b"] else ""
    rows = [[d["qid"], texts.get(d["qid"], ""), f"{d['a']:.4f}", f"{d['b']:.4f}", f"{d['delta']:+.4f}"] for d in deltas]
    return f"<h3>{html.escape(title)}</h3>" + _table_html(["query id", "query", a, b, "A - B"], rows)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
td { text-align: right; } td:first-child, td:nth-child(2) { text-align: left; }
img { max-width: 100%; }
"""


def write_html(comparison: Comparison, path: Path) -> Path:
    """Write the report as one self-contained HTML file (plots embedded as base64 PNGs); returns ``path``."""
    title = _title(comparison)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        _table_html(_headers(comparison), _rows(comparison)),
        f"<img alt='mean per metric' src='data:image/png;base64,{metric_chart(comparison)}'>",
    ]
    if comparison["b"] is not None:
        metric = comparison["headline"]
        wl = comparison["wins_losses"][metric]
        parts += [
            f"<h2>{html.escape(metric)} per query</h2>",
            f"<img alt='{html.escape(metric)} difference per query' src='data:image/png;base64,{delta_chart(comparison)}'>",
            _deltas_html(comparison, f"Biggest gains for {comparison['a']['name']}", wl["biggest_gains"]),
            _deltas_html(comparison, f"Biggest losses for {comparison['a']['name']}", wl["biggest_losses"]),
        ]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
