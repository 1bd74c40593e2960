from django.core.management.base import BaseCommand, CommandError

from recommender.api.apikeys import do_create_api_key


class Command(BaseCommand):
    help = "Create an API key for the REST API. The key is printed alone on the last line, once."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who or what uses the key, e.g. 'storefront'.")
        parser.add_argument(
            "--scopes", default="ingest,recommend,reports", help="Comma-separated: ingest, recommend, reports."
        )

    def handle(self, *args, name: str, scopes: str, **options):
        try:
            row, key = do_create_api_key(name, scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Created API key {row.name!r} with scopes {', '.join(row.scopes)}. Store it now:")
        self.stdout.write(key)
