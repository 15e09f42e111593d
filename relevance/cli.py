"""The one command-line entry point: ``relevance`` (or ``python -m relevance``).

Commands parse arguments, call the same services the API uses, and print; domain
errors become friendly CLI errors only here.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from relevance.config import Settings, load_settings
from relevance.engines import create_engine
from relevance.errors import CatalogError, RelevanceError
from relevance.filters import SearchFilters

if TYPE_CHECKING:
    from pydantic import BaseModel

    Params = TypeVar("Params", bound=BaseModel)

log = logging.getLogger(__name__)
SAMPLE_CATALOG = Path(__file__).resolve().parents[1] / "data" / "sample" / "wands_products.jsonl"


class FiniteFloat(click.FloatRange):
    """A float that is not nan or inf, within an optional range (click's FloatRange lets nan
    through: it compares False with every bound)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def _friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RelevanceError as exc:
            field = f" [{exc.field}]" if exc.field else ""
            raise click.ClickException(f"{exc.detail}{field}") from exc
        except ValueError as exc:  # pydantic validation of CLI-built objects
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # the file system's refusals (unwritable, full, unreadable): one line, not a traceback
            log.debug("%s", exc, exc_info=True)
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc

    return wrapper


@contextmanager
def _stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP (what kill, timeout, systemd and containers send) end a job as Ctrl-C
    does: as an exception raised in the job, so it drops its half-built version before the
    process exits (with 128 + the signal's number, as the shell reports a killed process)."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _services(ctx: click.Context):
    from relevance.services import Services

    if "services" not in ctx.obj:
        ctx.obj["services"] = Services.from_settings(_settings(ctx))
    return ctx.obj["services"]


@click.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False), help="Where indexes and caches live (RELEVANCE_DATA_DIR)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, data_dir: str | None, verbose: bool) -> None:
    """Search-relevance layer: index catalogs, search, serve the API, write TREC runs."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    overrides = {"data_dir": Path(data_dir)} if data_dir else {}
    try:
        ctx.obj = {"settings": load_settings(config_file, **overrides)}
    except RelevanceError as exc:
        raise click.ClickException(exc.detail) from exc


@main.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@_friendly_errors
def index(ctx: click.Context, catalog: Path, as_json: bool) -> None:
    """Index CATALOG (.jsonl, .csv, .parquet) into a new version and swap the alias onto it."""
    _print_report(_index_with_progress(ctx, catalog), as_json)


@main.command()
@click.argument("catalog", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--smoke-queries",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV query_id,query that must return hits (default: 5 catalog titles).",
)
@click.option(
    "--gate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Judgments (CSV, TREC qrels, Quepid CSV): refuse the swap if NDCG@10 drops below the live index's.",
)
@click.option(
    "--gate-queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV query_id,query."
)
@click.option("--gate-margin", type=FiniteFloat(0), default=0.01, show_default=True, help="Allowed NDCG@10 drop.")
@click.option("--grade-offset", type=FiniteFloat(), default=0.0, show_default=True, help="Gain = grade - offset.")
@click.option("--rollback", is_flag=True, help="Point the alias back at the version live before the current one.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@_friendly_errors
def reindex(ctx: click.Context, catalog: Path | None, rollback: bool, as_json: bool, **checks: Any) -> None:
    """Build a new version from CATALOG, check it, swap the alias (or --rollback)."""
    if rollback:
        # A rollback builds and checks nothing: an option it would ignore is refused, not dropped.
        given = ([str(catalog)] if catalog else []) + [_flag(name) for name in checks if _given(ctx, name)]
        if given:
            raise click.UsageError(f"--rollback takes no catalog and no other option; got {', '.join(given)}")
        _rollback(ctx, as_json)
        return
    if catalog is None:
        raise click.UsageError("give a CATALOG to reindex, or --rollback")
    # Every input is read and checked here, before anything is embedded or built.
    smoke = None
    if checks["smoke_queries"]:
        smoke = _smoke_queries(checks["smoke_queries"])
    gate = None
    if checks["gate"]:
        gate = _gate(checks["gate"], checks["gate_queries"], checks["gate_margin"], checks["grade_offset"])
    else:
        unused = [_flag(name) for name in ("gate_queries", "gate_margin", "grade_offset") if _given(ctx, name)]
        if unused:
            raise click.UsageError(f"{', '.join(unused)} without --gate JUDGMENTS would be ignored")
    _print_report(_index_with_progress(ctx, catalog, smoke_queries=smoke, gate=gate), as_json)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _smoke_queries(path: Path) -> list[str]:
    from relevance.trec import read_queries

    try:
        rows = read_queries(path)  # refuses blank queries, naming the line
    except CatalogError as exc:
        raise click.BadParameter(exc.detail, param_hint="--smoke-queries") from exc
    if not rows:  # a header alone would switch the check off
        raise click.BadParameter(f"{path} holds no query", param_hint="--smoke-queries")
    return [text for _, text in rows]


def _gate(judgments: Path, queries: Path | None, margin: float, grade_offset: float):
    from indexer.checks import JudgmentGate
    from relevance.judgments import read_judgments

    judged = read_judgments(judgments, queries_path=queries, grade_offset=grade_offset)
    problem = _no_query_text(judged, judgments, queries, "--gate-queries")
    if problem:
        raise click.BadParameter(problem, param_hint="--gate")
    return JudgmentGate(judged.queries, judged.gains, margin=margin)


def _no_query_text(judged: Any, judgments: Path, queries: Path | None, queries_option: str) -> str | None:
    """Why no judged query can be searched (none has a text), or None."""
    if judged.scorable():
        return None
    if queries:
        return f"no judged query of {judgments} has a text in {queries}"
    return f"{judgments} gives no query text, only ids; pass {queries_option} FILE (query_id,query)"


def _print_report(report: Any, as_json: bool) -> None:
    summary = report.as_dict()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        click.echo(f"{key:>22}: {value}")
    if report.summary["rejected"]:
        click.echo(f"{report.summary['rejected']} rejected rows with reasons: {report.dead_letter_path}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: version {report.version} is live, but {warning}", err=True)


def _rollback(ctx: click.Context, as_json: bool) -> None:
    from indexer.history import SwapHistory, rollback
    from indexer.job_lock import alias_job

    settings = _settings(ctx)
    with _stopped_like_ctrl_c(), alias_job(settings.index_job_lock_path, settings.index_alias):
        now, was = rollback(create_engine(settings), settings.index_alias, SwapHistory(settings.swap_history_path))
    if as_json:
        click.echo(json.dumps({"alias": settings.index_alias, "version": now, "previous_version": was}, indent=2))
    else:
        click.echo(f"{settings.index_alias} now serves {now} (was {was})")


def _index_with_progress(ctx: click.Context, catalog: Path, **checks: Any):
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="products", file=sys.stderr, leave=True)
        bar.update(done - bar.n)

    try:
        with _stopped_like_ctrl_c():
            return _services(ctx).index_catalog(catalog, progress=progress, **checks)
    finally:
        for bar in bars.values():
            bar.close()


def _ranking_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filters and ranking choices ``search`` and ``explain`` share."""
    options = [
        click.option("--category", help="Category path prefix, e.g. 'Furniture > Beds'."),
        click.option("--brand", multiple=True, help="Brand (repeat for any of several)."),
        click.option("--price-min", type=float),
        click.option("--price-max", type=float),
        click.option("--in-stock/--any-stock", default=None, help="Only products in stock."),
        click.option("--mode", type=click.Choice(["hybrid", "lexical", "vector"]), default="hybrid"),
        click.option("--fusion", type=click.Choice(["rrf", "linear"]), help="Default from settings."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("query")
@_ranking_options
@click.option("--size", type=click.IntRange(1, 100), default=10)
@click.option("--page", type=click.IntRange(1), default=1)
@click.option("--explain", is_flag=True, help="Show component scores and ranks.")
@click.pass_context
@_friendly_errors
def search(ctx: click.Context, query: str, **options: Any) -> None:
    """Search the served index and print the results as a table."""
    from rich.console import Console
    from rich.table import Table

    from relevance.api.schemas import SearchParams

    params = _request_params(SearchParams, query, options, ("page", "size"))
    services = _services(ctx)
    fusion = params.fusion_options(services.pipeline.default_fusion)
    result = services.pipeline.search(
        params.q, params.filters(), page=options["page"], size=options["size"], mode=options["mode"], fusion=fusion
    )
    searched = "".join(f", {word!r} also as {fixed!r}" for word, fixed in result.corrections.items())
    table = Table(title=f"{query!r}{searched}: {result.total} results in the window")
    for column in ("#", "product_id", "title", "category", "price", "score"):
        table.add_column(column)
    if options["explain"]:
        for column in ("lexical (rank)", "vector (rank)"):
            table.add_column(column)
    first = (options["page"] - 1) * options["size"] + 1
    for position, item in enumerate(result.results, start=first):
        product, hit = item.product, item.hit
        row = [
            str(position),
            product.product_id,
            product.title,
            product.category or "",
            _fmt(product.price),
            f"{hit.ranking_score:.4f}",
        ]
        if options["explain"]:
            row += [_component(hit.lexical_score, hit.lexical_rank), _component(hit.vector_score, hit.vector_rank)]
        table.add_row(*row)
    Console().print(table)
    if options["explain"]:
        click.echo(f"timings (ms): {result.timings.stages_ms}")


@main.command()
@click.argument("query")
@click.argument("product_id")
@_ranking_options
@click.option("--rerank/--no-rerank", default=True, show_default=True, help="Let the active learned model reorder.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole placement as JSON.")
@click.pass_context
@_friendly_errors
def explain(ctx: click.Context, query: str, product_id: str, as_json: bool, **options: Any) -> None:
    """Where PRODUCT_ID lands for QUERY, stage by stage, and why (served or not)."""
    from dataclasses import asdict

    from relevance.api.schemas import RankingParams
    from relevance.explain import explain_placement

    params = _request_params(RankingParams, query, options, ("rerank",))
    pipeline = _services(ctx).pipeline
    fusion = params.fusion_options(pipeline.default_fusion)
    found = explain_placement(
        pipeline, params.q, product_id, params.filters(), mode=params.mode, fusion=fusion, rerank=params.rerank
    )
    if as_json:
        body = {**asdict(found), "product": found.product.model_dump(), "summary": found.summary()}
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(found.summary())
    click.echo(f"  {found.product.product_id}: {found.product.title}")
    for name, placed in (("BM25", found.lexical), ("kNN", found.vector)):
        if placed is not None:
            click.echo(f"  {name}: {placed.describe()}")
    if found.fused_rank is not None:
        click.echo(f"  fused: rank {found.fused_rank}, score {found.fused_score:.4f}")
    if found.learned:
        learned = found.learned
        click.echo(
            f"  model {learned['model_version']}: score {learned['score']:.4f} = bias {learned['bias']:.4f} + contributions"
        )
        top = sorted(learned["contributions"].items(), key=lambda item: -abs(item[1]))[:8]
        for feature, contribution in top:
            value = learned["features"][feature]
            click.echo(f"    {contribution:+.4f}  {feature} = {'missing' if value is None else f'{value:.4g}'}")


def _request_params(model: type[Params], query: str, options: dict[str, Any], extra: tuple[str, ...] = ()) -> Params:
    """The API's own checks (a 1-500 character query, sane filters), as a one-line error naming the option."""
    from pydantic import ValidationError

    from relevance.errors import RequestError

    def hint(name: str | None) -> str | None:
        return "QUERY" if name == "q" else name and _flag(name)

    names = ("category", "price_min", "price_max", "in_stock", "mode", "fusion", *extra)
    try:
        return model(q=query, brand=list(options["brand"]), **{name: options[name] for name in names})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.BadParameter(first["msg"], param_hint=hint(str(first["loc"][0]) if first["loc"] else None)) from exc
    except RequestError as exc:
        raise click.BadParameter(exc.detail, param_hint=hint(exc.field)) from exc


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _component(score: float | None, rank: int | None) -> str:
    return "-" if score is None else f"{score:.3f} ({rank})"


@main.command()
@click.option(
    "--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="CSV query_id,query."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="TREC run file to write.")
@click.option(
    "--candidates",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV query_id,product_id: re-rank only these.",
)
@click.option(
    "--depth",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Results per query from the whole catalog.",
)
@click.option("--mode", type=click.Choice(["hybrid", "lexical", "vector"]), default="hybrid", show_default=True)
@click.option("--fusion", type=click.Choice(["rrf", "linear"]), help="Default from settings.")
@click.option("--tag", default="relevance", show_default=True, help="Run tag (last column).")
@click.pass_context
@_friendly_errors
def rank(
    ctx: click.Context,
    queries: Path,
    out: Path,
    candidates: Path | None,
    depth: int,
    mode: str,
    fusion: str | None,
    tag: str,
) -> None:
    """Write a TREC run (qid Q0 product_id rank score tag) for a CSV of queries."""
    from tqdm import tqdm

    from relevance.trec import read_candidates, read_queries, write_run

    if not tag or any(c.isspace() for c in tag):
        raise click.BadParameter(
            f"{tag!r}: a run tag is one word (a TREC run line is space-separated)", param_hint="--tag"
        )
    # Files first: a bad line fails before any query runs.
    query_rows = read_queries(queries, run_ids=True)
    candidate_sets = read_candidates(candidates) if candidates else None
    _prepare_output(out, "--out")
    services = _services(ctx)
    if candidate_sets is not None:
        _warn_unknown_candidates(services.pipeline, candidate_sets)
    options = services.pipeline.default_fusion
    if fusion:
        options = options.model_copy(update={"method": fusion})
    with _replaced_when_done(out) as handle:
        for query_id, text in tqdm(query_rows, desc="rank", unit="queries", file=sys.stderr):
            if candidate_sets is not None:
                ids = candidate_sets.get(query_id, [])
                hits = services.pipeline.rank_candidates(text, ids, mode=mode, fusion=options) if ids else []
            else:
                # Each list reaches at least --depth, so a deep run is not capped by the search window.
                candidates_per_list = max(services.settings.candidates, depth)
                hits = services.pipeline.ranked(
                    text, SearchFilters(), mode=mode, fusion=options, depth=depth, candidates=candidates_per_list
                )
            write_run(handle, query_id, hits, tag)
    click.echo(f"wrote {out} ({len(query_rows)} queries)")


def _warn_unknown_candidates(pipeline: Any, candidate_sets: dict[str, list[str]]) -> None:
    from relevance.offline import products_missing_from

    wanted = {pid for ids in candidate_sets.values() for pid in ids}
    missing = products_missing_from(pipeline, wanted)
    if missing:
        click.echo(
            f"warning: {len(missing)} of {len(wanted)} candidate ids are not in the index {pipeline.alias!r}:"
            " each follows its query's ranked candidates, in the order given",
            err=True,
        )


def _prepare_output(path: Path | None, option: str) -> None:
    """Create the output's directory and try writing in it now, so a bad path fails before
    the work, not after it."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot create the directory {path.parent}: {exc.strerror or exc}", param_hint=option
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write in {path.parent}: {exc.strerror or exc}", param_hint=option) from exc


@contextmanager
def _replaced_when_done(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` only on success,
    so a failure halfway never leaves a truncated or clobbered file behind."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        temporary = Path(handle.name)
        try:
            yield handle
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)  # a temporary file is private (0600); the run gets the usual mode
    temporary.replace(path)


@main.command()
@click.pass_context
@_friendly_errors
def versions(ctx: click.Context) -> None:
    """List the index versions kept for the alias (the live one is marked)."""
    services = _services(ctx)
    alias = services.settings.index_alias
    kept = services.engine.list_versions(alias)
    if not kept:
        click.echo(f"no version of {alias!r} is kept (relevance index CATALOG builds one)")
    for version in kept:
        marker = "*" if version.is_live else " "
        unfinished = (
            "" if version.complete else "  unfinished (being built, or left by a killed job; the next job drops it)"
        )
        products = f"{version.count:>8} products" if version.unavailable is None else f"  {version.unavailable}"
        click.echo(f"{marker} {version.name}  {products}  created {version.created_at}{unfinished}")


def _read_judgments(judgments: Path, queries: Path | None, grade_offset: float):
    from relevance.judgments import read_judgments

    judged = read_judgments(judgments, queries_path=queries, grade_offset=grade_offset)
    problem = _no_query_text(judged, judgments, queries, "--queries")
    if problem:
        raise click.ClickException(problem)
    return judged


def _judgment_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--grade-offset", type=FiniteFloat(), default=0.0, show_default=True, help="Gain = grade - offset."
    )(command)
    command = click.option(
        "--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV query_id,query."
    )(command)
    return click.option(
        "--judgments",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help="CSV, TREC qrels or Quepid CSV export.",
    )(command)


@main.command()
@_judgment_options
@click.option("--lists", default="window,judged", show_default=True, help="Candidate lists to learn from.")
@click.option(
    "--unjudged",
    type=click.Choice(["negative", "drop", "sample"]),
    default="negative",
    show_default=True,
    help="How unjudged candidates count: grade 0, left out, or N sampled as grade 0.",
)
@click.option("--unjudged-sample", type=click.IntRange(1), default=50, show_default=True)
@click.option(
    "--judged-weight",
    type=FiniteFloat(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Row weight of judged-list groups against search-window groups.",
)
@click.option(
    "--from-logs",
    type=click.Path(exists=True, path_type=Path),
    help="Train on served-feature logs (file or directory) instead of fetching candidates.",
)
@click.option(
    "--valid-share",
    type=FiniteFloat(0, 0.9),
    default=0.1,
    show_default=True,
    help="Queries held out to stop boosting early and to measure the model (0: 300 rounds, no measure).",
)
@click.option(
    "--refit/--no-refit",
    default=True,
    show_default=True,
    help="After early stopping, train again on every query (held-out ones too) for the stopped round count"
    " scaled to them, and save that model.",
)
@click.option("--activate", is_flag=True, help="Serve the new model right away.")
@click.option("--json", "as_json", is_flag=True, help="Print the model's metadata as JSON.")
@click.pass_context
@_friendly_errors
def train(ctx: click.Context, judgments: Path, queries: Path | None, grade_offset: float, **options: Any) -> None:
    """Train a LightGBM lambdarank reranker on judgments and save it as a model version."""
    from tqdm import tqdm

    from reranker.training import (
        CollectOptions,
        candidate_lists,
        category_learner,
        collect_from_logs,
        label_scale,
        split_queries,
        train_and_save,
        training_set,
    )

    services = _services(ctx)
    judged = _read_judgments(judgments, queries, grade_offset)
    lists = tuple(part.strip() for part in options["lists"].split(","))
    if not set(lists) <= {"window", "judged"}:
        raise click.BadParameter("use window, judged or both", param_hint="--lists")
    collect = CollectOptions(
        lists=lists,
        unjudged=options["unjudged"],
        unjudged_sample=options["unjudged_sample"],
        judged_weight=options["judged_weight"],
    )
    scale = label_scale(judged)
    fit_queries, valid_queries = split_queries(judged.scorable(), options["valid_share"])
    if not fit_queries:
        raise click.BadParameter(
            f"all {len(valid_queries)} queries with a text fell in the held-out share {options['valid_share']:g},"
            " leaving none to train on: lower it (0 holds none out)",
            param_hint="--valid-share",
        )
    source = {"judgments": str(judgments), "grade_offset": grade_offset}
    categories = category_learner(services.pipeline, judged, fit_queries + valid_queries)
    if options["from_logs"]:  # logged rows keep the values served (by the then active model's table)
        data = collect_from_logs(options["from_logs"], judged, scale, collect)
        valid_ids = set(valid_queries)
        fit = data.subset(set(data.queries) - valid_ids)
        valid = data.subset(set(data.queries) & valid_ids)
        source["feature_logs"] = str(options["from_logs"])
    else:
        bar = tqdm(total=len(judged.scorable()), desc="candidates", unit="queries", file=sys.stderr)
        found = candidate_lists(
            services.pipeline, judged, fit_queries + valid_queries, lists, lambda _: bar.update(1), categories
        )
        bar.close()
        fit_set = set(fit_queries)
        fit = training_set([c for c in found if c.query_id in fit_set], judged, scale, collect)
        valid = training_set([c for c in found if c.query_id not in fit_set], judged, scale, collect)
        source["query_vectors"] = services.embedder.query_vectors_id
        source["spelling_correction"] = services.settings.spelling_correction  # what the lexical lists searched
    registry = services.pipeline.reranker.registry
    version, meta = train_and_save(
        fit,
        valid,
        registry,
        scale=scale,
        options=collect,
        source=source,
        judged_categories=categories.table(),
        refit=options["refit"],
    )
    if options["activate"]:
        registry.activate(version)
    if options["as_json"]:
        click.echo(json.dumps(meta, indent=2))
        return
    click.echo(f"saved model {version}{' (active)' if options['activate'] else ''}")
    click.echo(f"  training: {meta['training']['queries']} queries, {meta['training']['rows']} rows")
    click.echo(f"  validation: {json.dumps(meta['validation'])}")
    if meta["refit"]:
        refit = meta["refit"]
        click.echo(
            f"  refit on all {meta['training']['queries']} queries: {refit['rounds']} trees"
            f" (early stopping chose {refit['early_stopped_rounds']}; the validation figures are that model's)"
        )


@main.group()
def models() -> None:
    """List, activate and roll back reranker model versions."""


def _registry(ctx: click.Context):
    from reranker.registry import ModelRegistry

    return ModelRegistry(_settings(ctx).model_root, _settings(ctx).default_model)


@models.command("list")
@click.pass_context
@_friendly_errors
def models_list(ctx: click.Context) -> None:
    """The saved model versions; * marks the active one, ! one that cannot be read."""
    from relevance.errors import ModelError

    registry = _registry(ctx.find_root())
    try:
        registry.active_version()
    except ModelError as exc:  # the versions are listed all the same; activating one repairs the pointer
        click.echo(f"warning: {exc.detail}", err=True)
    versions = registry.versions()
    if not versions:
        click.echo("no model trained yet (relevance train --judgments FILE)")
    for version in versions:
        if version.problem:
            click.echo(f"! {version.name}  unusable: {version.problem}")
            continue
        marker = "*" if version.is_active else " "
        validation = version.meta.get("validation", {})
        scores = ", ".join(f"{k}={v}" for k, v in validation.items() if k.endswith(("_model", "_fused")))
        refit = version.meta.get("refit")
        if refit:  # the figures were measured before the refit, on queries the saved model then learned from
            scores += f"  (of the model stopped at {refit['early_stopped_rounds']} trees; refit to {refit['rounds']})"
        click.echo(f"{marker} {version.name}  created {version.created_at}  {scores}")


@models.command("activate")
@click.argument("version")
@click.pass_context
@_friendly_errors
def models_activate(ctx: click.Context, version: str) -> None:
    """Serve VERSION (running servers switch on their next request)."""
    previous = _registry(ctx.find_root()).activate(version)
    click.echo(f"active model: {version} (was {previous or 'none'})")


@models.command("rollback")
@click.pass_context
@_friendly_errors
def models_rollback(ctx: click.Context) -> None:
    """Return to the model (or to no model) active before the current one."""
    previous = _registry(ctx.find_root()).rollback()
    click.echo(f"active model: {previous}" if previous else "no model active: serving the fused order")


@models.command("deactivate")
@click.pass_context
@_friendly_errors
def models_deactivate(ctx: click.Context) -> None:
    """Serve the fused order, without a learned model."""
    _registry(ctx.find_root()).deactivate()
    click.echo("no model active: serving the fused order")


@main.command()
@_judgment_options
@click.option(
    "--vs",
    "versus",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings B (reads A's data directory).",
)
@click.option("--k", type=click.IntRange(1, 100), default=10, show_default=True, help="Cutoff of the @k metrics.")
@click.option("--depth", type=click.IntRange(1, 1000), default=100, show_default=True, help="Full-retrieval depth.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML report here.")
@click.option("--samples", type=click.IntRange(100), default=10000, show_default=True, help="Bootstrap resamples.")
@click.pass_context
@_friendly_errors
def evaluate(ctx: click.Context, judgments: Path, queries: Path | None, grade_offset: float, **options: Any) -> None:
    """Score the configured pipeline (--config: A) on judgments, optionally against --vs B.

    NDCG@k, MAP, MRR, ERR@k, P@k and Recall@k in judged-list and full-retrieval mode,
    with paired bootstrap confidence intervals and per-query wins and losses.
    """
    from tqdm import tqdm

    from relevance.comparison import compare
    from relevance.offline import missing_products, per_query_metrics, runs_for, scored_queries
    from relevance.report import render_table, to_json, write_html
    from relevance.services import Services

    judged = _read_judgments(judgments, queries, grade_offset)
    scored = scored_queries(judged)
    skipped = _skipped_note(judged, judgments, queries)
    if not scored:
        raise click.ClickException(f"no judged query can be scored: {skipped}")
    if options["versus"] and len(scored) < 2:
        raise click.ClickException(
            f"--vs compares the systems query by query with a paired bootstrap, which needs at least 2 scored"
            f" queries; {len(scored)} can be scored{f' ({skipped})' if skipped else ''}"
        )
    if skipped:
        click.echo(f"skipped {skipped}", err=True)
    _prepare_output(options["out"], "--out")
    _prepare_output(options["html"], "--html")
    systems = [("A", _services(ctx))]
    if options["versus"]:
        # B's file describes a configuration; both systems read the data A reads.
        settings_b = load_settings(options["versus"], data_dir=_settings(ctx).data_dir)
        services_b = Services.from_settings(settings_b)
        if _embedding_settings(settings_b) == _embedding_settings(_settings(ctx)):
            services_b.embedder = systems[0][1].embedder  # one model in memory for both
            services_b.pipeline.embedder = systems[0][1].embedder
        systems.append(("B", services_b))
    names, results = [], []
    for label, services in systems:
        name, unused = _system_name(label, services)  # before scoring: a broken setup fails fast
        names.append(name)
        if unused:
            click.echo(f"system {label} ranks in the fused order: {unused}", err=True)
        missing = missing_products(services.pipeline, judged)
        if missing:
            click.echo(f"system {label}: {_missing_note(missing, judged, services.settings.index_alias)}", err=True)
        bar = tqdm(total=len(scored), desc=f"system {label}", unit="queries", file=sys.stderr)
        runs = runs_for(services.pipeline, judged, options["depth"], lambda _, bar=bar: bar.update(1), missing)
        bar.close()
        results.append(per_query_metrics(runs, judged, options["k"]))
    comparison = compare(
        names[0],
        results[0],
        names[1] if len(names) > 1 else None,
        results[1] if len(results) > 1 else None,
        judged.queries,
        samples=options["samples"],
        headline=f"full:ndcg@{options['k']}",
    )
    click.echo(render_table(comparison))
    if options["out"]:
        options["out"].write_text(json.dumps(to_json(comparison), indent=2), encoding="utf-8")
        click.echo(f"wrote {options['out']}")
    if options["html"]:
        write_html(comparison, options["html"])
        click.echo(f"wrote {options['html']}")


def _skipped_note(judged: Any, judgments: Path, queries: Path | None) -> str:
    """Why judged queries go unscored, e.g. "3 of 6 judged queries: 2 ...; 1 ...", or "" when none is."""
    from relevance.offline import skipped_queries

    skipped = skipped_queries(judged)
    where = f"in {queries}" if queries else f"in {judgments} (pass --queries FILE)"
    reasons = {
        "one grade": "with one grade for all judged products (the benchmark's rule: nothing to rank)",
        "no text": f"with no query text {where}",
    }
    parts = [f"{len(qids)} {reasons[reason]}" for reason, qids in skipped.items() if qids]
    total = sum(len(qids) for qids in skipped.values())
    return f"{total} of {len(judged.gains)} judged queries: {'; '.join(parts)}" if parts else ""


def _system_name(label: str, services: Any) -> tuple[str, str | None]:
    """The system as it ranks: the model that reranks, or, where one is active but cannot, the
    fused order; and then why not (too long for a table's column)."""
    settings, pipeline = services.settings, services.pipeline
    model, unused = "no model", None
    if settings.rerank and pipeline.reranker is not None:
        status = pipeline.reranker.status(pipeline.catalog_stats.current())
        if status.state == "active":
            model = status.version
        elif status.state == "degraded":
            model, unused = f"fused order (model {status.version or '?'} unusable)", status.reason
    return f"{label}: {settings.engine}, {settings.fusion} fusion, {model}", unused


def _embedding_settings(settings: Settings) -> dict[str, Any]:
    return {name: value for name, value in settings.model_dump().items() if name.startswith("embedding_")}


def _missing_note(missing: set[str], judged: Any, alias: str) -> str:
    from relevance.offline import scored_queries

    scored = scored_queries(judged)
    queries = sum(1 for qid in scored if missing & judged.gains[qid].keys())
    total = len({pid for qid in scored for pid in judged.gains[qid]})
    return (
        f"{len(missing)} of {total} judged products (of {queries} scored queries) are not in the index {alias!r}:"
        " judged-list mode cannot rank them and counts them as not found; full retrieval cannot return them"
        " (stale judgments, or another catalog)"
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@click.pass_context
@_friendly_errors
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the HTTP API with gunicorn."""
    from relevance.server import run_gunicorn

    run_gunicorn(_settings(ctx), host=host, port=port, workers=workers)


@main.command()
@click.option(
    "--catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=SAMPLE_CATALOG, show_default=True
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@click.pass_context
@_friendly_errors
def demo(ctx: click.Context, catalog: Path, host: str, port: int, workers: int) -> None:
    """Index the sample catalog if nothing is served yet, then serve the API."""
    from relevance.server import run_gunicorn

    settings = _settings(ctx)
    live = create_engine(settings).alias_target(settings.index_alias)
    if live is None:
        click.echo(f"indexing the sample catalog {catalog} (first run only)...")
        # Index in a spawned child: gunicorn forks its workers from this process, and
        # forking after torch has started its thread pools leaves workers that hang on exit.
        child = multiprocessing.get_context("spawn").Process(
            target=_index_in_child, args=(settings.model_dump(mode="json"), str(catalog))
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise click.ClickException(f"indexing {catalog} failed (see above)")
    else:
        click.echo(f"serving existing index {live}")
    click.echo(f"try: curl 'http://{host}:{port}/search?q=velvet+recliner&size=5'")
    run_gunicorn(_settings(ctx), host=host, port=port, workers=workers)


def _index_in_child(settings_values: dict[str, Any], catalog: str) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    context = click.Context(main, obj={"settings": Settings(**settings_values)})
    try:
        report = _friendly_errors(_index_with_progress)(context, Path(catalog))
    except click.ClickException as exc:  # one line, as `relevance index` says it, not the child's traceback
        exc.show()
        sys.exit(exc.exit_code)
    click.echo(f"indexed {report.summary['indexed']} products into {report.version}")


if __name__ == "__main__":
    main()
