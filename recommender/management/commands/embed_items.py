from django.core.management.base import BaseCommand

from recommender.features.embeddings import dirty_items, text_model_name
from recommender.training.embed import do_embed_items


class Command(BaseCommand):
    help = "Embed the text of new and changed items (only those whose text changed since their last embedding)."

    def add_arguments(self, parser):
        parser.add_argument("--max-items", type=int, default=None, help="Stop after this many items.")
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args, max_items, batch_size, **options):
        todo = dirty_items().count()
        self.stdout.write(f"{todo:,} item(s) need embedding with {text_model_name()}.")
        if not todo:
            return
        result = do_embed_items(max_items=max_items, batch_size=batch_size)
        rate = result.embedded / result.seconds if result.seconds else 0.0
        self.stdout.write(
            f"Embedded {result.embedded:,} item(s) in {result.seconds:.1f}s ({rate:,.0f}/s); {result.remaining:,} remaining."
        )
