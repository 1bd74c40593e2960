"""How the SYNTHETIC demo shoppers respond to a recommendation list: clicks, carts, purchases.

**This is a synthetic world, not evidence about real shoppers.** The shoppers, their tastes
and the rules by which they click and buy are made up (:mod:`recommender.demo.synthetic`);
an experiment run against them shows that the serving, logging, attribution and reporting
machinery works end to end, and how a policy fares *in this made-up world*. It says nothing
about how a policy would fare with real people.

The world is regenerated from the parameters the shop was seeded with (the catalog and the
shoppers come out of the same random stream as in :func:`~recommender.demo.synthetic.generate_shop`,
without simulating the weeks of history), so the hidden truths match the history the model
was trained on. A shopper responds to a served list with the generator's own session rules:

* utility of item ``j`` for shopper ``u``: ``quality[j] * (3 if j's brand is a favourite of u
  else 1) * relative_price[j] ** -beta[u]`` (the formula of the generator's sessions);
* relative to their typical item: in the generator a session picks a category ``c`` with
  probability ``taste[u, c]`` and compares an item with the mean utility of that category.
  A recommended list mixes categories, so an item is compared with its category's mean and
  weighted by how likely the shopper is to be shopping that category, against a typical
  session's: ``relative = utility / mean_utility[c] * taste[u, c] / sum_c taste[u, c]**2``;
* click-through ``min(0.6, 0.07 * sqrt(relative) / (1 + 0.15 * position))`` (position from 0),
  then a product view; a clicked item goes into the cart with ``min(0.6, 0.1 * sqrt(relative))``
  and is bought with probability 0.55, one unit mostly (the generator's constants).

Nothing favours or penalises long-tail items as such: a tail item is clicked more or less
only as far as its utility for the shopper says. Pure numpy; never imports Django.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import synthetic
from .synthetic import DAY, DEFAULT_VOCABULARY, Vocabulary, item_number, user_number


@dataclass(frozen=True)
class ResponseParams:
    """The response rules' constants; the defaults are those of the generator's sessions."""

    click_base: float = 0.07
    position_decay: float = 0.15
    cart_base: float = 0.1
    purchase_given_cart: float = 0.55
    max_probability: float = 0.6
    brand_boost: float = 3.0


@dataclass(frozen=True)
class ShopWorld:
    """The hidden truths of a synthetic shop that shoppers' responses depend on (index = item or shopper number)."""

    params: dict[str, Any]
    item_category: np.ndarray  # (n_items,) int
    item_quality: np.ndarray  # (n_items,) float
    item_rel_price: np.ndarray  # (n_items,) price / its category's median price
    item_brand: np.ndarray  # (n_items,) int, global brand index
    item_price: np.ndarray  # (n_items,) float, the catalog price
    item_titles: tuple[str, ...]
    user_taste: np.ndarray  # (n_users, n_categories), rows sum to 1
    user_favourite: np.ndarray  # (n_users, n_brands) bool
    user_beta: np.ndarray  # (n_users,) price sensitivity
    user_rate: np.ndarray  # (n_users,) relative activity (sessions per week, mean about 1)

    @property
    def n_items(self) -> int:
        return len(self.item_quality)

    @property
    def n_users(self) -> int:
        return len(self.user_beta)


def build_world(
    n_items: int = 3_000,
    n_users: int = 1_500,
    weeks: int = 8,
    seed: int = 0,
    vocabulary: Vocabulary = DEFAULT_VOCABULARY,
    new_item_share: float = 0.05,
) -> ShopWorld:
    """The world of ``generate_shop`` with the same arguments, without simulating its history (milliseconds)."""
    if n_items < 1 or n_users < 1 or weeks < 1:
        raise ValueError("n_items, n_users and weeks must each be at least 1.")
    # The same calls in the same order as generate_shop: the random stream, and so the world, is the same.
    rng = np.random.default_rng(seed)
    span = weeks * 7 * DAY
    catalog = synthetic._make_catalog(rng, vocabulary, n_items, span, new_item_share)
    users = synthetic._make_users(rng, vocabulary, catalog, n_users, span)
    n_brands = len(vocabulary.brand_stems) * len(vocabulary.brand_suffixes)
    favourite = np.zeros((n_users, n_brands), dtype=bool)
    for u, brands in enumerate(users.favourite_brands):
        favourite[u, list(brands)] = True
    return ShopWorld(
        params={"n_items": n_items, "n_users": n_users, "weeks": weeks, "seed": seed, "new_item_share": new_item_share},
        item_category=catalog.category,
        item_quality=catalog.quality,
        item_rel_price=catalog.rel_price,
        item_brand=catalog.brand_code,
        item_price=catalog.prices,
        item_titles=tuple(catalog.titles),
        user_taste=users.taste,
        user_favourite=favourite,
        user_beta=users.beta,
        user_rate=users.rate,
    )


# Demo ids back to the generator's numbers (one definition of the id format, in synthetic.py).
item_index = item_number
user_index = user_number


@dataclass(frozen=True)
class Response:
    """One thing a shopper did with a served list."""

    event_type: str  # "click", "view", "add_to_cart" or "purchase"
    position: int  # the item's position in the list, from 0
    item: int  # item number
    offset_s: int  # seconds after the list was shown
    value: float | None  # view: seconds on the page; cart and purchase: quantity


class ResponseModel:
    """Samples a shopper's responses to a served list from the synthetic world's rules."""

    def __init__(self, world: ShopWorld, params: ResponseParams = ResponseParams()) -> None:
        self.world = world
        self.params = params

    def utility(self, user: int) -> np.ndarray:
        """(n_items,) the generator's utility of every item for ``user``."""
        w = self.world
        boost = np.where(w.user_favourite[user, w.item_brand], self.params.brand_boost, 1.0)
        return w.item_quality * boost * w.item_rel_price ** -w.user_beta[user]

    def relative_utility(self, user: int, items: np.ndarray) -> np.ndarray:
        """(len(items),) each item's utility for ``user`` relative to their typical item (about 1 on average)."""
        w = self.world
        items = np.asarray(items, dtype=np.int64)
        util = self.utility(user)
        n_cat = w.user_taste.shape[1]
        sums = np.bincount(w.item_category, weights=util, minlength=n_cat)
        sizes = np.bincount(w.item_category, minlength=n_cat)
        mean = sums / np.maximum(sizes, 1)
        taste = w.user_taste[user]
        cats = w.item_category[items]
        return util[items] / mean[cats] * taste[cats] / float(np.sum(taste * taste))

    def click_probability(self, user: int, items: np.ndarray) -> np.ndarray:
        """(len(items),) probability that ``user`` clicks each item at its position (list order)."""
        p = self.params
        rel = self.relative_utility(user, items)
        positions = np.arange(len(rel))
        return np.minimum(p.max_probability, p.click_base * np.sqrt(rel) / (1 + p.position_decay * positions))

    def cart_probability(self, user: int, items: np.ndarray) -> np.ndarray:
        """(len(items),) probability that ``user`` adds each item to the cart once they clicked it."""
        p = self.params
        return np.minimum(p.max_probability, p.cart_base * np.sqrt(self.relative_utility(user, items)))

    def respond(self, user: int, items: list[int | None], rng: np.random.Generator) -> list[Response]:
        """Sample ``user``'s responses to a list of item numbers (None: an item this world does not know).

        The same ``rng`` state gives the same responses. Offsets grow through the visit: the
        shopper scans the list, clicks down it, views each clicked page, then buys from the cart.
        """
        known = [(pos, j) for pos, j in enumerate(items) if j is not None]
        out: list[Response] = []
        if not known:
            return out
        positions = np.array([pos for pos, _ in known])
        idx = np.array([j for _, j in known], dtype=np.int64)
        p = self.params
        rel = self.relative_utility(user, idx)
        click = np.minimum(p.max_probability, p.click_base * np.sqrt(rel) / (1 + p.position_decay * positions))
        cart = np.minimum(p.max_probability, p.cart_base * np.sqrt(rel))
        u_click, u_cart, u_buy = rng.random(len(idx)), rng.random(len(idx)), rng.random(len(idx))
        t = int(rng.integers(3, 30))
        carted: list[tuple[int, int, float]] = []
        for n in range(len(idx)):
            if u_click[n] >= click[n]:
                continue
            pos, j = int(positions[n]), int(idx[n])
            out.append(Response("click", pos, j, t, None))
            out.append(Response("view", pos, j, t + 1, float(round(rng.lognormal(3.5, 0.8)))))
            t += int(rng.integers(10, 120))
            if u_cart[n] < cart[n]:
                qty = 1.0 if rng.random() < 0.85 else float(rng.integers(2, 4))
                out.append(Response("add_to_cart", pos, j, t, qty))
                t += int(rng.integers(5, 60))
                if u_buy[n] < p.purchase_given_cart:
                    carted.append((pos, j, qty))
        for pos, j, qty in carted:
            out.append(Response("purchase", pos, j, t + int(rng.integers(60, 600)), qty))
        return out


__all__ = [
    "Response",
    "ResponseModel",
    "ResponseParams",
    "ShopWorld",
    "build_world",
    "item_index",
    "user_index",
]
