"""Shared plumbing of the import commands: progress bar, summary and clear errors."""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from recommender.ingestion.files import FORMATS, FileProblem, ImportFailed, ImportReport, Source


def add_common_arguments(parser: Any, default_chunk: int) -> None:
    """Arguments both import commands take."""
    parser.add_argument("path", help="The file to import.")
    parser.add_argument(
        "--format", dest="fmt", choices=FORMATS, default="csv",
        help="csv: the interchange CSV of EVALUATION.md (default); online-retail: the UCI Online Retail parquet.",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=default_chunk,
        help=f"Rows per transaction (default {default_chunk:,}). A failure rolls back only the current chunk.",
    )
    parser.add_argument(
        "--limit-rows", type=int, default=None,
        help="Read only the first N rows of the file (a quick trial or a test sample).",
    )


def run_import(
    command: BaseCommand,
    opener: Callable[[], Source],
    importer: Callable[[Source, Callable[[int], None]], ImportReport],
    verbosity: int,
) -> None:
    """Open the file, import it under a progress bar, print the summary; errors become CommandError."""
    try:
        source = opener()
    except FileProblem as exc:
        raise CommandError(str(exc)) from None
    # OutputWrapper appends a newline to every write, which would break tqdm's redraws.
    stream = getattr(command.stderr, "_out", sys.stderr)
    with tqdm(total=source.total, file=stream, unit=" rows", disable=verbosity == 0,
              desc=f"{source.path.name}", mininterval=0.5) as bar:
        try:
            report = importer(source, bar.update)
        except ImportFailed as exc:
            bar.close()
            command.stdout.write("\n".join(exc.report.summary_lines()))
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"The database failed outside a chunk ({exc}). Whatever was committed before stays; "
                "run the same command again once the database is fixed: nothing is stored twice."
            ) from exc
    command.stdout.write("\n".join(report.summary_lines()))
