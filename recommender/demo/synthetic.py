"""A SYNTHETIC demo shop: a catalog, shoppers with tastes, and weeks of browsing sessions.

Everything here is made up, deterministically from a seed: items with titles built from
per-category vocabularies (swap :data:`DEFAULT_VOCABULARY` for another language or
assortment), brands, lognormal prices per category, Zipf-like item quality within each
category (so popularity has a long tail), a few items launched in the last week (cold
start), and shoppers who each mix a few categories and brands and care more or less about
price. Sessions follow a funnel: the shop shows a list (impressions), the shopper clicks
and views some items, sometimes searches first, adds a few to the cart, buys some, and
rates a few purchases days later.

Pure numpy and stdlib: never imports Django. Records are plain dicts in the API format.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

DAY = 86_400


@dataclass(frozen=True)
class CategoryVocab:
    """Words for one category: its path, its leaves (sub-categories) with their nouns, materials, adjectives."""

    path: str
    leaves: dict[str, tuple[str, ...]]
    materials: tuple[str, ...]
    adjectives: tuple[str, ...]
    median_price: float
    price_sigma: float = 0.45


@dataclass(frozen=True)
class Vocabulary:
    """All the text the generator uses; pass another one to change language or assortment."""

    categories: tuple[CategoryVocab, ...]
    colours: tuple[str, ...]
    brand_stems: tuple[str, ...]
    brand_suffixes: tuple[str, ...]
    packs: tuple[str, ...]
    # Placeholders: {title} {noun} {material} {colour} {adjective} {brand} {leaf}.
    descriptions: tuple[str, ...]


DEFAULT_VOCABULARY = Vocabulary(
    categories=(
        CategoryVocab(
            "home/kitchen",
            {"mugs": ("mug", "cup", "beaker"), "bowls": ("bowl", "serving bowl", "salad bowl"),
             "utensils": ("spatula", "whisk", "ladle", "tongs"), "storage": ("jar", "canister", "lunch box")},
            ("stoneware", "enamel", "bamboo", "glass", "ceramic", "stainless steel"),
            ("rustic", "classic", "speckled", "stackable", "everyday", "vintage", "nordic"),
            12.0,
        ),
        CategoryVocab(
            "home/decor",
            {"candles": ("candle", "tealight holder", "lantern"), "frames": ("photo frame", "picture frame"),
             "cushions": ("cushion", "cushion cover", "throw"), "vases": ("vase", "bud vase", "planter")},
            ("linen", "cotton", "velvet", "wooden", "metal", "glass"),
            ("hanging", "scandi", "boho", "heart", "botanical", "striped", "antique"),
            22.0,
        ),
        CategoryVocab(
            "home/garden",
            {"tools": ("trowel", "pruner", "hand fork", "watering can"), "planters": ("plant pot", "window box", "planter"),
             "lighting": ("solar light", "string lights", "garden lantern"), "birds": ("bird feeder", "bird house", "bird bath")},
            ("galvanised", "terracotta", "rattan", "cast iron", "recycled plastic"),
            ("weatherproof", "heavy duty", "compact", "hanging", "ornamental", "classic"),
            18.0,
        ),
        CategoryVocab(
            "kids/toys",
            {"puzzles": ("jigsaw puzzle", "floor puzzle", "shape sorter"), "plush": ("teddy bear", "plush bunny", "soft toy"),
             "building": ("building blocks", "construction set", "marble run"), "games": ("board game", "card game", "dominoes")},
            ("wooden", "felt", "cardboard", "organic cotton", "plastic-free"),
            ("colourful", "educational", "mini", "giant", "magnetic", "classic"),
            15.0,
        ),
        CategoryVocab(
            "office/stationery",
            {"notebooks": ("notebook", "journal", "sketchbook"), "pens": ("fountain pen", "gel pen set", "pencil set"),
             "desk": ("desk organiser", "pen pot", "letter tray"), "cards": ("greeting card", "gift tag set", "postcard set")},
            ("recycled paper", "kraft", "leather", "brass", "cork"),
            ("dotted", "lined", "pocket", "a5", "floral", "minimalist", "retro"),
            6.0,
            0.55,
        ),
        CategoryVocab(
            "fashion/accessories",
            {"bags": ("tote bag", "backpack", "crossbody bag"), "scarves": ("scarf", "snood", "bandana"),
             "jewellery": ("necklace", "bracelet", "earrings"), "hats": ("beanie", "bucket hat", "sun hat")},
            ("canvas", "wool", "silk", "sterling silver", "vegan leather", "knitted"),
            ("oversized", "chunky", "delicate", "everyday", "reversible", "embroidered"),
            20.0,
        ),
        CategoryVocab(
            "electronics/accessories",
            {"chargers": ("usb-c charger", "wireless charger", "power bank"), "cables": ("charging cable", "hdmi cable", "usb hub"),
             "audio": ("earbuds", "headphones", "bluetooth speaker"), "cases": ("phone case", "laptop sleeve", "tablet stand")},
            ("braided", "aluminium", "silicone", "recycled", "fabric"),
            ("fast", "compact", "wireless", "foldable", "rugged", "slim"),
            22.0,
            0.6,
        ),
        CategoryVocab(
            "beauty/care",
            {"skincare": ("face cream", "serum", "cleansing balm"), "bath": ("bath bomb", "bath salts", "body wash"),
             "hair": ("shampoo bar", "hair oil", "wooden comb"), "fragrance": ("eau de parfum", "scented candle", "room spray")},
            ("lavender", "rose", "shea butter", "argan oil", "charcoal", "citrus"),
            ("natural", "vegan", "soothing", "travel size", "organic", "refillable"),
            14.0,
        ),
        CategoryVocab(
            "sports/outdoor",
            {"fitness": ("yoga mat", "resistance band", "kettlebell"), "camping": ("camping mug", "head torch", "sleeping bag"),
             "cycling": ("bike light", "water bottle", "saddle bag"), "running": ("running belt", "sports socks", "cap")},
            ("neoprene", "recycled polyester", "merino", "aluminium", "cork"),
            ("lightweight", "non-slip", "insulated", "reflective", "packable", "pro"),
            28.0,
            0.55,
        ),
        CategoryVocab(
            "pets/supplies",
            {"dogs": ("dog lead", "dog bed", "chew toy"), "cats": ("cat scratcher", "cat toy", "cat bed"),
             "bowls": ("pet bowl", "slow feeder", "water fountain"), "grooming": ("pet brush", "grooming glove", "pet shampoo")},
            ("rope", "ceramic", "sisal", "fleece", "natural rubber"),
            ("durable", "cosy", "washable", "interactive", "calming", "small"),
            16.0,
        ),
    ),
    colours=("white", "black", "sage green", "navy", "mustard", "terracotta", "blush pink", "charcoal",
             "sky blue", "cream", "forest green", "red", "grey", "ochre"),
    brand_stems=("Acme", "Nord", "Oak", "Sun", "Urban", "Little", "Happy", "Terra", "Nova", "Willow",
                 "Fox", "Pebble", "Maple", "Harbour", "Juniper", "Atlas", "Clover", "Ember"),
    brand_suffixes=("Home", "Works", "& Co", "Living", "Craft", "Lab", "Studio", "Goods", "Supply", "Made"),
    packs=("Set of 2", "Set of 4", "Large", "Small", "Gift Box", "Twin Pack"),
    descriptions=(
        "Meet our {adjective} {noun} in {colour} {material}, made by {brand}. Part of our {leaf} range.",
        "{title}: {material}, {colour}, and built to last. Designed by {brand}.",
        "Our {adjective} {noun} from {brand} brings {colour} {material} to your {leaf} collection.",
        "{brand} {noun} made from {material}. {adjective} design, finished in {colour}.",
    ),
)


@dataclass
class SyntheticShop:
    """The generated shop: API records plus the hidden truths the data was drawn from."""

    items: list[dict[str, Any]]
    events: list[dict[str, Any]]  # sorted by timestamp
    user_ids: list[str]
    start: datetime
    end: datetime
    category_paths: list[str]  # top-level category of index k
    item_category: np.ndarray  # (n_items,) int, index into category_paths
    item_quality: np.ndarray  # (n_items,) float, the Zipf-like appeal within its category
    item_launch: np.ndarray  # (n_items,) int seconds after ``start`` (<= 0: in the catalog from the start)
    user_taste: np.ndarray  # (n_users, n_categories) float, rows sum to 1
    user_price_sensitivity: np.ndarray  # (n_users,) float
    params: dict[str, Any] = field(default_factory=dict)

    def event_type_counts(self) -> dict[str, int]:
        """How many events of each type were generated."""
        counts: dict[str, int] = {}
        for ev in self.events:
            counts[ev["event_type"]] = counts.get(ev["event_type"], 0) + 1
        return counts


ITEM_ID_PREFIX = "demo-i"
USER_ID_PREFIX = "demo-u"


def item_external_id(index: int) -> str:
    """The demo's id of item ``index``: namespaced so that demo rows can be found and removed."""
    return f"{ITEM_ID_PREFIX}{index:05d}"


def user_external_id(index: int) -> str:
    """The demo's id of shopper ``index``."""
    return f"{USER_ID_PREFIX}{index:05d}"


def item_number(external_id: str) -> int | None:
    """The inverse of :func:`item_external_id` ("demo-i00012" -> 12); None for any other id."""
    return _number(external_id, ITEM_ID_PREFIX)


def user_number(external_id: str) -> int | None:
    """The inverse of :func:`user_external_id`; None for any other id."""
    return _number(external_id, USER_ID_PREFIX)


def _number(external_id: str, prefix: str) -> int | None:
    rest = external_id[len(prefix):] if external_id.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


DEMO_PREFIX = "demo-"


def generate_shop(
    n_items: int = 3_000,
    n_users: int = 1_500,
    weeks: int = 8,
    seed: int = 0,
    now: datetime | None = None,
    vocabulary: Vocabulary = DEFAULT_VOCABULARY,
    new_item_share: float = 0.05,
    sessions_per_week: float = 2.0,
) -> SyntheticShop:
    """Generate a whole shop; the same arguments (and ``now``) give the same records."""
    if n_items < 1 or n_users < 1 or weeks < 1:
        raise ValueError("n_items, n_users and weeks must each be at least 1.")
    end = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    span = weeks * 7 * DAY
    start = end - timedelta(seconds=span)
    rng = np.random.default_rng(seed)
    vocab = vocabulary
    n_cat = len(vocab.categories)

    catalog = _make_catalog(rng, vocab, n_items, span, new_item_share)
    users = _make_users(rng, vocab, catalog, n_users, span)
    # The ids of one run depend on every parameter, so that a run with other sizes never
    # mistakes its events for this one's.
    tag = hashlib.sha1(f"{seed}|{n_items}|{n_users}|{weeks}|{new_item_share}|{sessions_per_week}".encode()).hexdigest()[:8]
    raw = _simulate(rng, vocab, catalog, users, span, sessions_per_week)
    raw.sort(key=lambda e: (e[0], e[6]))

    events = []
    for ts, user, item, etype, value, query, seq in raw:
        rec: dict[str, Any] = {
            "event_id": f"demo-{tag}-{seq}",
            "user_id": user_external_id(user),
            "item_id": item_external_id(item),
            "event_type": etype,
            "timestamp": (start + timedelta(seconds=int(ts))).isoformat(),
        }
        if value is not None:
            rec["value"] = value
        if query:
            rec["query"] = query
        events.append(rec)

    items = [
        {
            "item_id": item_external_id(i),
            "title": catalog.titles[i],
            "description": catalog.descriptions[i],
            "category": catalog.leaf_paths[i],
            "brand": catalog.brands[i],
            "price": float(catalog.prices[i]),
            "attributes": {
                "synthetic": True,
                "colour": catalog.colours[i],
                "material": catalog.materials[i],
                "launched": (start + timedelta(seconds=int(catalog.launch[i]))).date().isoformat(),
            },
        }
        for i in range(n_items)
    ]
    return SyntheticShop(
        items=items,
        events=events,
        user_ids=[user_external_id(u) for u in range(n_users)],
        start=start,
        end=end,
        category_paths=[c.path for c in vocab.categories],
        item_category=catalog.category,
        item_quality=catalog.quality,
        item_launch=catalog.launch,
        user_taste=users.taste,
        user_price_sensitivity=users.beta,
        params={"n_items": n_items, "n_users": n_users, "weeks": weeks, "seed": seed, "tag": tag, "n_categories": n_cat},
    )


# --------------------------------------------------------------------------- catalog


@dataclass
class _Catalog:
    category: np.ndarray
    quality: np.ndarray
    prices: np.ndarray
    rel_price: np.ndarray  # price / the category's median price
    brand_code: np.ndarray  # global brand index
    launch: np.ndarray
    titles: list[str]
    descriptions: list[str]
    leaf_paths: list[str]
    brands: list[str]
    colours: list[str]
    materials: list[str]
    nouns: list[str]
    by_category: list[np.ndarray]  # item indexes per category
    category_brands: list[np.ndarray]  # global brand indexes per category


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def _make_catalog(rng: np.random.Generator, vocab: Vocabulary, n_items: int, span: int, new_share: float) -> _Catalog:
    n_cat = len(vocab.categories)
    # Uneven category sizes, as in a real shop; every category keeps at least one item.
    share = rng.dirichlet(np.full(n_cat, 4.0))
    category = rng.choice(n_cat, size=n_items, p=share)
    category[: min(n_cat, n_items)] = np.arange(min(n_cat, n_items))
    rng.shuffle(category)

    brand_names = [f"{s} {x}" for s in vocab.brand_stems for x in vocab.brand_suffixes]
    order = rng.permutation(len(brand_names))
    brand_names = [brand_names[k] for k in order]
    category_brands = []
    cursor = 0
    for _ in range(n_cat):
        k = int(rng.integers(5, 10))
        category_brands.append(np.arange(cursor, cursor + k) % len(brand_names))
        cursor += k
    brand_quality = rng.lognormal(0.0, 0.35, size=len(brand_names))  # some brands are simply better liked

    quality = np.empty(n_items)
    brand_code = np.empty(n_items, dtype=np.int64)
    by_category = []
    for c in range(n_cat):
        idx = np.flatnonzero(category == c)
        by_category.append(idx)
        # Zipf-like appeal: a few hits and a long tail in every category.
        ranks = rng.permutation(len(idx)) + 1
        quality[idx] = ranks ** -0.8 * rng.lognormal(0.0, 0.25, size=len(idx))
        brands = category_brands[c]
        brand_code[idx] = brands[rng.choice(len(brands), size=len(idx), p=_zipf_weights(len(brands), 0.8))]
    quality *= brand_quality[brand_code]

    launch = -rng.integers(DAY, 3 * 365 * DAY, size=n_items)  # seconds before the window opens
    n_new = int(round(new_share * n_items))
    if n_new:
        new = rng.choice(n_items, size=n_new, replace=False)
        launch[new] = span - rng.integers(0, 7 * DAY, size=n_new)  # launched during the last week

    titles, descriptions, leaf_paths, brands_out, colours, materials, nouns = [], [], [], [], [], [], []
    prices = np.empty(n_items)
    rel_price = np.empty(n_items)
    for i in range(n_items):
        cv = vocab.categories[category[i]]
        leaf = list(cv.leaves)[int(rng.integers(len(cv.leaves)))]
        noun = cv.leaves[leaf][int(rng.integers(len(cv.leaves[leaf])))]
        material = cv.materials[int(rng.integers(len(cv.materials)))]
        colour = vocab.colours[int(rng.integers(len(vocab.colours)))]
        adjective = cv.adjectives[int(rng.integers(len(cv.adjectives)))]
        brand = brand_names[brand_code[i]]
        parts = []
        if rng.random() < 0.6:
            parts.append(adjective)
        if rng.random() < 0.7:
            parts.append(colour)
        if rng.random() < 0.6:
            parts.append(material)
        parts.append(noun)
        title = " ".join(parts).title()
        if rng.random() < 0.15:
            title += ", " + vocab.packs[int(rng.integers(len(vocab.packs)))]
        raw_price = cv.median_price * rng.lognormal(0.0, cv.price_sigma)
        price = max(0.99, float(np.floor(raw_price)) + (0.99 if rng.random() < 0.7 else 0.49))
        prices[i] = round(price, 2)
        rel_price[i] = price / cv.median_price
        template = vocab.descriptions[int(rng.integers(len(vocab.descriptions)))]
        text = template.format(title=title, noun=noun, material=material, colour=colour, adjective=adjective,
                               brand=brand, leaf=leaf)
        descriptions.append(text[0].upper() + text[1:])
        titles.append(title)
        leaf_paths.append(f"{cv.path}/{leaf}")
        brands_out.append(brand)
        colours.append(colour)
        materials.append(material)
        nouns.append(noun)
    return _Catalog(category, quality, prices, rel_price, brand_code, launch, titles, descriptions, leaf_paths,
                    brands_out, colours, materials, nouns, by_category, category_brands)


# --------------------------------------------------------------------------- shoppers


@dataclass
class _Users:
    taste: np.ndarray  # (n_users, n_cat)
    favourite_brands: list[set[int]]
    beta: np.ndarray  # price sensitivity: utility is multiplied by relative_price ** -beta
    rate: np.ndarray  # sessions per week
    joined: np.ndarray  # seconds after start


def _make_users(rng: np.random.Generator, vocab: Vocabulary, catalog: _Catalog, n_users: int, span: int) -> _Users:
    n_cat = len(vocab.categories)
    cat_size = np.array([len(ix) for ix in catalog.by_category], dtype=float)
    cat_pop = (cat_size + 1) / (cat_size + 1).sum()
    taste = np.full((n_users, n_cat), 0.03 / n_cat)
    favourites: list[set[int]] = []
    for u in range(n_users):
        # Each shopper mixes one to three categories, bigger categories more often.
        k = min(n_cat, int(rng.integers(1, 4)))
        cats = rng.choice(n_cat, size=k, replace=False, p=cat_pop)
        taste[u, cats] += 0.97 * rng.dirichlet(np.full(k, 1.5))
        fav = set()
        for c in cats[: int(rng.integers(1, 3))]:
            brands = catalog.category_brands[c]
            fav.add(int(brands[int(rng.integers(len(brands)))]))
        favourites.append(fav)
    taste /= taste.sum(axis=1, keepdims=True)
    beta = rng.uniform(0.0, 1.5, size=n_users)
    rate = np.clip(rng.lognormal(np.log(0.75), 0.8, size=n_users), 0.05, 8.0)  # relative activity, mean ~1
    joined = np.where(rng.random(n_users) < 0.25, rng.integers(0, span, size=n_users), 0)
    return _Users(taste, favourites, beta, rate, joined)


# --------------------------------------------------------------------------- sessions

# Evening-heavy shopping hours (weights per UTC hour).
_HOURS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 3.5, 4, 4, 3.5, 3.5, 3.5, 4, 5, 6, 6.5, 6, 4, 2])
_HOURS = _HOURS / _HOURS.sum()


def _simulate(rng: np.random.Generator, vocab: Vocabulary, cat: _Catalog, users: _Users, span: int,
              sessions_per_week: float) -> list[tuple]:
    """Run every shopper's sessions; returns (seconds, user, item, type, value, query, seq) tuples."""
    out: list[tuple] = []
    seq = 0
    n_cat = len(vocab.categories)
    for u in range(len(users.beta)):
        active_weeks = (span - users.joined[u]) / (7 * DAY)
        n_sessions = int(rng.poisson(users.rate[u] * sessions_per_week * active_weeks))
        if n_sessions == 0:
            continue
        days = rng.integers(users.joined[u] // DAY, span // DAY, size=n_sessions)
        hours = rng.choice(24, size=n_sessions, p=_HOURS)
        starts = np.sort(days * DAY + hours * 3600 + rng.integers(0, 3600, size=n_sessions))
        cats = rng.choice(n_cat, size=n_sessions, p=users.taste[u])
        fav = users.favourite_brands[u]
        fav_arr = np.fromiter(fav, dtype=np.int64)
        for t0, c in zip(starts.tolist(), cats.tolist()):
            idx = cat.by_category[c]
            idx = idx[cat.launch[idx] <= t0]  # items not launched yet cannot be shown
            if len(idx) == 0:
                continue
            boost = np.where(np.isin(cat.brand_code[idx], fav_arr), 3.0, 1.0)
            utility = cat.quality[idx] * boost * cat.rel_price[idx] ** -users.beta[u]
            p_user = utility / utility.sum()
            # The shop lists its bestsellers first: what it shows follows appeal, not this shopper.
            shop = cat.quality[idx] ** 0.6
            p_shop = shop / shop.sum()
            t = float(t0)
            shown: list[int] = []
            if rng.random() < 0.25:
                j = int(idx[rng.choice(len(idx), p=p_user)])
                words = [cat.nouns[j]]
                r = rng.random()
                if r < 0.35:
                    words.insert(0, cat.colours[j])
                elif r < 0.55:
                    words.insert(0, cat.materials[j])
                out.append((t, u, j, "search", None, " ".join(words), seq)); seq += 1
                shown.append(j)
                t += rng.integers(2, 15)
            n_list = min(len(idx), int(rng.integers(4, 8)))
            listed = idx[rng.choice(len(idx), size=n_list, replace=False, p=p_shop)]
            for j in listed.tolist():
                if j not in shown:
                    shown.append(j)
            mean_u = utility.mean()
            viewed: list[int] = []
            for pos, j in enumerate(shown):
                out.append((t, u, j, "impression", None, "", seq)); seq += 1
            t += rng.integers(3, 30)
            for pos, j in enumerate(shown):
                # Click-through falls with list position and rises with how much this shopper likes it.
                ctr = min(0.6, 0.07 * (utility[np.searchsorted(idx, j)] / mean_u) ** 0.5 / (1 + 0.15 * pos))
                if rng.random() < ctr:
                    out.append((t, u, j, "click", None, "", seq)); seq += 1
                    t += 1
                    out.append((t, u, j, "view", float(round(rng.lognormal(3.5, 0.8))), "", seq)); seq += 1
                    viewed.append(j)
                    t += rng.integers(10, 120)
            # Browsing: product pages reached from the category menu, chosen by taste.
            for j in idx[rng.choice(len(idx), size=int(rng.poisson(1.5)), p=p_user)].tolist():
                out.append((t, u, j, "view", float(round(rng.lognormal(3.5, 0.8))), "", seq)); seq += 1
                viewed.append(j)
                t += rng.integers(10, 120)
            for j in dict.fromkeys(viewed):
                p_cart = min(0.6, 0.1 * (utility[np.searchsorted(idx, j)] / mean_u) ** 0.5)
                if rng.random() >= p_cart:
                    continue
                qty = 1.0 if rng.random() < 0.85 else float(rng.integers(2, 4))
                out.append((t, u, j, "add_to_cart", qty, "", seq)); seq += 1
                t += rng.integers(5, 60)
                if rng.random() < 0.55:
                    out.append((t + rng.integers(60, 600), u, j, "purchase", qty, "", seq)); seq += 1
                    if rng.random() < 0.15:
                        t_rate = t + rng.integers(2 * DAY, 14 * DAY)
                        if t_rate < span:
                            pct = float((cat.quality[idx] < cat.quality[j]).mean())
                            stars = int(np.clip(round(2.4 + 2.2 * pct + 0.5 * (int(cat.brand_code[j]) in fav) + rng.normal(0, 0.8)), 1, 5))
                            out.append((float(t_rate), u, j, "rating", float(stars), "", seq)); seq += 1
    # Sessions near the end may run past "now": the shop has not seen those events yet.
    return [e for e in out if e[0] < span]


__all__ = [
    "DEFAULT_VOCABULARY",
    "DEMO_PREFIX",
    "CategoryVocab",
    "SyntheticShop",
    "Vocabulary",
    "generate_shop",
    "item_external_id",
    "item_number",
    "user_external_id",
    "user_number",
]
