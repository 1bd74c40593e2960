from django.core.management.base import BaseCommand

from recommender.ingestion.files import DEFAULT_EVENT_CHUNK, do_import_events, open_events

from ._importing import add_common_arguments, run_import


class Command(BaseCommand):
    help = (
        "Import behaviour events from an events.csv (interchange format) or, with --format "
        "online-retail, the purchases of the UCI Online Retail parquet (its items are created "
        "first, with titles and prices). Re-importing a file stores nothing twice."
    )

    def add_arguments(self, parser):
        add_common_arguments(parser, DEFAULT_EVENT_CHUNK)
        parser.add_argument(
            "--strict-items", action="store_true",
            help="Skip (and list) events naming an item the catalog does not have, instead of "
            "creating a placeholder item for it.",
        )

    def handle(self, *args, path: str, fmt: str, chunk_size: int, limit_rows: int | None, strict_items: bool,
               verbosity: int, **options):
        run_import(
            self,
            lambda: open_events(path, fmt, chunk_size=chunk_size, limit_rows=limit_rows),
            lambda source, progress: do_import_events(source, strict_items=strict_items, progress=progress),
            verbosity,
        )
