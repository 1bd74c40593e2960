from django.core.management.base import BaseCommand

from recommender.ingestion.files import DEFAULT_ITEM_CHUNK, do_import_items, open_items

from ._importing import add_common_arguments, run_import


class Command(BaseCommand):
    help = (
        "Import catalog items from an items.csv (interchange format) or, with --format online-retail, "
        "from the UCI Online Retail parquet. Existing items are updated in place; bad rows are "
        "listed with their line numbers and never written."
    )

    def add_arguments(self, parser):
        add_common_arguments(parser, DEFAULT_ITEM_CHUNK)

    def handle(self, *args, path: str, fmt: str, chunk_size: int, limit_rows: int | None, verbosity: int, **options):
        run_import(
            self,
            lambda: open_items(path, fmt, chunk_size=chunk_size, limit_rows=limit_rows),
            lambda source, progress: do_import_items(source, progress=progress),
            verbosity,
        )
