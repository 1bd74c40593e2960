from django.core.management.base import BaseCommand, CommandError

from recommender.demo.simulate import DEMO_EXPERIMENT, ShopParams, SimulationError, do_simulate_traffic


class Command(BaseCommand):
    help = (
        "SIMULATED traffic for the synthetic demo shop: for each of the last N days (ending yesterday), M demo "
        "shoppers get a list from the real recommender (under their A/B arm), the list is logged as serving "
        "logs it, and their clicks, add-to-carts and purchases, sampled from the synthetic world's rules, are "
        "ingested with its request_id; then the report tables are aggregated. The shoppers are made up: the "
        "figures say how a policy fares in a synthetic world, not with real shoppers. Running it twice stores "
        "nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7, help="Simulated days, ending yesterday (default 7).")
        parser.add_argument("--lists-per-day", type=int, default=100, help="Shoppers served per day (default 100).")
        parser.add_argument(
            "--experiment", nargs="?", const=DEMO_EXPERIMENT, default=None, metavar="NAME",
            help=f"Serve under this A/B experiment, created (no boost vs fair exposure, 50/50) and started when "
            f"absent; without a name: '{DEMO_EXPERIMENT}'. Without the flag: whatever serves now.",
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed of the simulation (which shoppers, what they do)."
        )
        parser.add_argument("--k", type=int, default=10, help="List length (default 10).")
        parser.add_argument(
            "--no-aggregate", action="store_true",
            help="Do not run the aggregation job at the end (when aggregate_reports runs next anyway).",
        )
        defaults = ShopParams()
        parser.add_argument("--shop-items", type=int, default=defaults.items, help="seed_demo's --items.")
        parser.add_argument("--shop-users", type=int, default=defaults.users, help="seed_demo's --users.")
        parser.add_argument("--shop-weeks", type=int, default=defaults.weeks, help="seed_demo's --weeks.")
        parser.add_argument("--shop-seed", type=int, default=defaults.seed, help="seed_demo's --seed.")

    def handle(self, *args, days: int, lists_per_day: int, experiment: str | None, seed: int, k: int,
               shop_items: int, shop_users: int, shop_weeks: int, shop_seed: int, no_aggregate: bool, verbosity: int,
               **options):
        if min(shop_items, shop_users, shop_weeks) < 1:
            raise CommandError("--shop-items, --shop-users and --shop-weeks must each be at least 1.")

        def progress(day, n):
            if verbosity > 1:
                self.stdout.write(f"  {day}: {n} simulated lists")

        try:
            result = do_simulate_traffic(
                days, lists_per_day, seed=seed, experiment=experiment, k=k,
                shop=ShopParams(shop_items, shop_users, shop_weeks, shop_seed), aggregate=not no_aggregate,
                progress=progress,
            )
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("\n".join(result.summary_lines()))
