"""``tagteller scan``: classify files, folders and globs with a domain's model, or without
``--domain`` with every domain that has one (:meth:`tagteller.engine.Engine.scan_any`); optionally
check the deal against typical prices (``--price``), read the text on the photos as a second opinion
(``--read-text``, :mod:`tagteller.text_cues`) and file the images as feedback (``--correct``)."""

from __future__ import annotations

import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

import typer

from tagteller.cli.common import DEFAULT_LOW_CONFIDENCE, resolve_domain_and_model, stderr, usable_domain_models
from tagteller.engine import ScanResult, default_engine, display_name
from tagteller.output import FORMATS, make_writer, resolve_output, result_record
from tagteller.sources import InputProblem, describe_skipped, expand

PROGRESS_MIN_FILES = 8


def scan(
    paths: list[str] = typer.Argument(..., help="Image files, folders (scanned recursively) or glob patterns."),
    domain: Optional[str] = typer.Option(
        None, "--domain", "-d",
        help="Domain to scan with (see `tagteller domains`). Without it (and without --model), every "
             "domain that has a model is tried and the one that recognises the image answers."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Use this .onnx model instead of the domain's."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many labels to report per image."),
    fmt: Optional[str] = typer.Option(
        None, "--format", "-f",
        help=f"Output format: {', '.join(FORMATS)} (default: from the -o file's extension "
             ".json/.jsonl/.csv, else table)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Write results to this file (atomically; checked before scanning) and a summary line on "
             "stderr; - is standard output."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, max=1024, help="Images per inference batch."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal and there are many files)."),
    price: Optional[str] = typer.Option(
        None, "--price", "-p",
        help="What you pay, e.g. 12.50: compare it with the typical price of the predicted label "
             "(see `tagteller prices`)."),
    currency: Optional[str] = typer.Option(
        None, "--currency", "-c",
        help="Currency of --price (ISO code); only typical prices in it are used. "
             "Default: whatever the price list uses."),
    correct: Optional[str] = typer.Option(
        None, "--correct",
        help="The right label for these images: file each scanned image into the domain's "
             "feedback inbox under it."),
    new_label: bool = typer.Option(
        False, "--new-label", help="With --correct: the label is a new class (domains that allow it)."),
    accept_unknown: bool = typer.Option(
        False, "--accept-unknown",
        help="Report the best label even for images the model says are unlike anything its domain "
             "knows (status ok, marked not sure; the score is still recorded)."),
    read_text: Optional[bool] = typer.Option(
        None, "--read-text/--no-read-text",
        help="Also read the text on each photo (OCR; needs the optional 'ocr' extra) for domains that "
             "declare text cues (clothing-tags, shoes): a brand name found there is recorded (text, "
             "text_match) and overrides the image answer where the domain allows. Costs 50-200 times "
             "the image model. Default: the domain's own default (off for the built-in ones)."),
    engine: str = typer.Option(
        "local", "--engine",
        help="local: scan in this process. ray: scan on Ray Data (the [ray] extra), from folders, globs or "
             "URLs (s3://, gs://...) into Parquet or JSON-lines shards under --output DIR (docs/scale-out.md)."),
    address: Optional[str] = typer.Option(
        None, "--address", help="--engine ray: the Ray cluster to use (auto, ray://host:10001); default: "
                                "$RAY_ADDRESS, else a local Ray runtime with this machine's cores."),
    actors: Optional[int] = typer.Option(
        None, "--actors", help="--engine ray: how many model actors (one CPU each); default: the cluster's CPUs."),
    resume: bool = typer.Option(
        False, "--resume", help="--engine ray: skip the files whose results --output DIR already holds "
                                "(same path and size)."),
) -> None:
    """Tell what is in each image. Exit code 0 when every file scanned (an "unknown" answer
    included), 1 when some failed."""
    from tagteller.atomic import atomic_open
    from tagteller.cli import fail
    from tagteller.exitcodes import ExitCode

    if engine == "ray":
        from tagteller.cli.scan_ray import scan_with_ray

        return scan_with_ray(paths, domain, model, top_k, fmt, output, batch_size, progress, accept_unknown,
                             address, actors, resume,
                             {"--price": price, "--correct": correct, "--read-text": read_text})
    if engine != "local":
        raise fail(f"unknown --engine {engine!r}; choose from local, ray")
    ray_only = [name for name, value in (("--address", address), ("--actors", actors), ("--resume", resume)) if value]
    if ray_only:
        raise fail(f"{', '.join(ray_only)}: only with --engine ray")

    from tagteller.errors import TagtellerError

    try:  # the output file is checked before anything is scanned
        output, fmt = resolve_output(output, fmt)
    except TagtellerError as exc:
        raise fail(str(exc)) from None
    if new_label and correct is None:
        raise fail("--new-label goes with --correct LABEL")
    if currency is not None and price is None:
        raise fail("--currency goes with --price AMOUNT")
    paid = None
    if price is not None:
        from tagteller.prices import parse_amount, validate_currency

        paid = parse_amount(price, "--price")
        currency = validate_currency(currency) if currency is not None else None
    if read_text:
        from tagteller.text_cues import require_ocr

        require_ocr("--read-text")
    onnx_engine = default_engine()
    any_domain = domain is None and model is None
    if any_domain:
        if correct is not None:
            raise fail("--correct files images into one domain's feedback inbox: give --domain NAME too")
        usable = usable_domain_models(onnx_engine)
        models = [loaded for _dom, loaded in usable]
        thresholds = {dom.name: dom.low_confidence for dom, _loaded in usable}
        results_domain, results_version = "", ""
    else:
        dom, model_path = resolve_domain_and_model(domain, model)
        loaded = onnx_engine.load(model_path)
        if dom is not None:
            dom.check_model(loaded.info.domain, model_path)
        thresholds = {loaded.info.domain: dom.low_confidence if dom is not None else DEFAULT_LOW_CONFIDENCE}
        results_domain, results_version = loaded.info.domain, loaded.info.model_version

    def low_confidence(name: str) -> float:
        """The ``sure`` threshold of the domain a result is for."""
        return thresholds.get(name, DEFAULT_LOW_CONFIDENCE)

    feedback_domain = None
    if correct is not None:
        from tagteller import feedback, plugins

        feedback_domain = dom or plugins.get_domain(loaded.info.domain)
        correct = feedback.check_label(feedback_domain, correct, new_label)
    if paid is not None:
        from tagteller.prices import DealCheck

        deals = DealCheck(paid, currency)
    else:
        deals = None
    opinion = text_opinion(read_text, [d for d, _loaded in usable] if any_domain else [dom], loaded.info.domain
                           if not any_domain else None)

    skipped: Counter[str] = Counter()
    items = expand(paths, skipped)
    files = [p for p in items if not isinstance(p, InputProblem)]
    problems = [p for p in items if isinstance(p, InputProblem)]
    failed = 0

    def report_failure(name: str, reason: str) -> None:
        stderr.print(f"error: {name}: {reason}", markup=False)

    if deals is None:
        extra_columns: tuple[str, ...] = ()
    else:
        from tagteller.prices import DEAL_FIELDS

        extra_columns = ("deal",) if fmt == "table" else DEAL_FIELDS

    with ExitStack() as stack:
        stream = stack.enter_context(atomic_open(output, "w", encoding="utf-8")) if output else sys.stdout
        answering = models if any_domain else [loaded]
        writer = make_writer(fmt, stream, extra_columns=extra_columns, any_domain=any_domain,
                             names=[display_name(p) for p in files] + [p.source for p in problems],
                             labels=[label for m in answering for label in m.info.labels],
                             domains=[m.info.domain for m in answering])
        from tagteller.summary import ScanSummary

        summary = ScanSummary()
        for problem in problems:
            failed += 1
            report_failure(problem.source, problem.reason)
            problem_record = result_record(ScanResult.failure(problem.source, problem.reason, results_domain,
                                                              results_version, every_domain=any_domain),
                                           low_confidence, deals=deals)
            writer.write(problem_record)
            summary.add(problem_record, scanned=False)
        show = progress if progress is not None else (sys.stderr.isatty() and len(files) >= PROGRESS_MIN_FILES)
        bar = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = stack.enter_context(Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                                               TimeRemainingColumn(), console=stderr.real(), transient=True))
            task = bar.add_task("scan", total=len(files))
        names = [display_name(p) for p in files]
        if any_domain:
            results = onnx_engine.scan_any(models, files, top_k=top_k, batch_size=batch_size, names=names,
                                           accept_unknown=accept_unknown)
        else:
            results = onnx_engine.scan(loaded, files, top_k=top_k, batch_size=batch_size, names=names,
                                       accept_unknown=accept_unknown)
        for result in results:
            if opinion is not None and result.ok:
                problem = opinion.apply(result, files[result.index])
                if problem is not None:
                    failed += 1
                    report_failure(result.source, problem)
            if not result.ok:
                failed += 1
                report_failure(result.source, result.error or "failed")
            record = result_record(result, low_confidence, deals=deals)
            writer.write(record)
            summary.add(record)
            if result.ok and feedback_domain is not None and correct is not None:
                from tagteller.errors import TagtellerError

                try:
                    filed = feedback.file_path(feedback_domain, files[result.index], correct, new_label)
                except TagtellerError as exc:
                    failed += 1
                    report_failure(result.source, f"not filed as feedback: {exc}")
                else:
                    stderr.print(f"{result.source}: {filed.message}", markup=False)
            if bar is not None:
                bar.advance(task)
        writer.close()
    if output is not None:
        stderr.print(summary.line(str(output)), markup=False)
    if skipped:
        stderr.print(describe_skipped(skipped), markup=False)
    for priced_domain, unpriced in (deals.unpriced.items() if deals is not None else ()):
        if unpriced:
            stderr.print(f"hint: no typical price for {', '.join(unpriced)}; add one with "
                         f"`tagteller prices set --domain {priced_domain} LABEL LOW HIGH`", markup=False)
    if failed:
        stderr.print(f"{failed} of {len(files) + len(problems)} input(s) failed", markup=False)
        raise typer.Exit(ExitCode.FAILED)


def text_opinion(read_text: bool | None, domains: list[Any], model_domain: str | None) -> Any:
    """The :class:`~tagteller.text_cues.SecondOpinion` of this scan, or None: the domains of the
    scan that declare text cues, read when ``--read-text`` is given or (without
    ``--no-read-text``) when the domain reads by default and the ``ocr`` extra is installed.
    ``model_domain``: the domain named by a ``--model`` file when no domain object was resolved."""
    from tagteller.text_cues import SecondOpinion, ocr_available

    if read_text is False:
        return None
    if model_domain is not None and domains == [None]:
        from tagteller import plugins
        from tagteller.errors import UnknownDomainError

        try:
            domains = [plugins.get_domain(model_domain)]
        except UnknownDomainError:
            domains = []
    cues = {d.name: d.text_cues for d in domains if d is not None and d.text_cues is not None
            and (read_text or d.text_cues.read_by_default)}
    if read_text and not cues:
        stderr.print("note: no domain of this scan declares text cues; --read-text reads nothing", markup=False)
        return None
    if not cues:
        return None
    if not read_text and not ocr_available():
        stderr.print("note: not reading text (the domain's default): the 'ocr' extra is not installed",
                     markup=False)
        return None
    return SecondOpinion(cues)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
