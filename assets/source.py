"""A deterministic stand-in for the shop's source API.

Pure functions, no engine import: the bronze assets call them, and so do the tests. Everything
comes out of `random.Random` instances seeded with strings (stable across Python versions and
machines) and fixed calendar anchors, never the clock, so the same seed and size give
byte-identical Arrow data on every run.

This module holds what the feeds share (seeds, sizes, calendar anchors, the seeded generators,
product prices) and the two reference extracts: the product catalogue and the customer
extract, whose records are dirty too (e-mail casing and whitespace, a share of customers
delivered twice). The order feed, most of the data, is `assets.order_feed`.
"""

from __future__ import annotations

import os
import random
from datetime import date, datetime, timedelta

import pyarrow as pa

GENERATOR_VERSION = "2"
DEFAULT_SEED = 42
DEFAULT_ROWS = 1_000  # order records per day
ROWS_ENV = "SLUICE_EXAMPLE_ROWS"
DAY_S = 86_400

FIRST_DAY = date(2024, 1, 1)  # the order feed's first day; it has no last one
FEED_START = datetime.combine(FIRST_DAY, datetime.min.time())  # products changed before it
CUSTOMER_UPDATE_DAYS = 91  # second customer versions are dated 2024-01-01 .. 2024-03-31
SIGNUP_START = date(2021, 1, 1)
SIGNUP_DAYS = 1095  # customers signed up 2021-01-01 .. 2023-12-31

CATEGORIES = (
    "Books",
    "Electronics",
    "Garden",
    "Grocery",
    "Home & Kitchen",
    "Sports",
    "Toys",
)
COUNTRIES = ("DE", "FR", "NL", "BE", "AT", "ES", "IT", "PL", "SE", "DK")
PRODUCT_COUNT = 140

# Shares of customer records.
CUSTOMER_DUPLICATE_RATE = 0.03  # a second, later version with a changed e-mail address

CUSTOMERS_SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("first_name", pa.string()),
        pa.field("last_name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("country", pa.string()),
        pa.field("signup_date", pa.string()),
        pa.field("updated_at", pa.timestamp("us"), nullable=False),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string()),
        pa.field("product_name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("list_price", pa.string()),
        pa.field("updated_at", pa.timestamp("us"), nullable=False),
    ]
)

_FIRST_NAMES = (
    "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Klara", "Luca", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sofia", "Tom",
    "Ulla", "Victor", "Wiebke", "Xavier", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Andersen", "Bakker", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Hansen",
    "Jansen", "Kowalski", "Lambert", "Martin", "Novak", "Olsen", "Peeters", "Rossi",
    "Schmidt", "Taylor", "Vogel", "Weber",
)  # fmt: skip
_EMAIL_DOMAINS = ("example.com", "mail.example", "post.example.org", "inbox.example.net")
_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Mini", "Pro", "Smart", "Ultra")
_NOUNS = {
    "Books": ("Cookbook", "Novel", "Atlas", "Field Guide", "Poetry Collection"),
    "Electronics": ("Headphones", "Charger", "Speaker", "Webcam", "Keyboard"),
    "Garden": ("Hose", "Planter", "Pruner", "Seed Kit", "Watering Can"),
    "Grocery": ("Coffee Beans", "Olive Oil", "Green Tea", "Granola", "Dark Chocolate"),
    "Home & Kitchen": ("Kettle", "Pan", "Knife Set", "Blender", "Lamp"),
    "Sports": ("Yoga Mat", "Water Bottle", "Running Belt", "Dumbbell", "Jump Rope"),
    "Toys": ("Puzzle", "Building Blocks", "Plush Bear", "Board Game", "Kite"),
}
_PRICE_RANGE_CENTS = {
    "Books": (799, 4_999),
    "Electronics": (1_499, 29_999),
    "Garden": (499, 8_999),
    "Grocery": (199, 2_999),
    "Home & Kitchen": (999, 19_999),
    "Sports": (599, 9_999),
    "Toys": (699, 7_999),
}


def example_rows(default: int = DEFAULT_ROWS) -> int:
    """Order records per day, from `SLUICE_EXAMPLE_ROWS` (e.g. `20000` or `100_000`)."""
    raw = os.environ.get(ROWS_ENV, "").strip()
    if not raw:
        return default
    try:
        rows = int(raw)
    except ValueError:
        raise ValueError(f"{ROWS_ENV} must be a whole number of rows, got {raw!r}") from None
    if rows < 1:
        raise ValueError(f"{ROWS_ENV} must be at least 1, got {rows}")
    return rows


def code_version(*, sized: bool = True, seed: int = DEFAULT_SEED) -> str:
    """Version of a generated feed, for the asset's `code_version`.

    The data comes from this module, not from the asset function's body, so the function's own
    hash would not notice a change here: bump `GENERATOR_VERSION` whenever the output changes.
    `sized` feeds (orders, customers) also depend on `SLUICE_EXAMPLE_ROWS`.
    """
    version = f"source-v{GENERATOR_VERSION}-seed{seed}"
    return f"{version}-rows{example_rows()}" if sized else version


def customer_count(rows: int) -> int:
    """Customers in the extract for a feed of `rows` order records a day: ten per daily order
    (about three orders per customer a month), at least 100."""
    return max(100, rows * 10)


def seeded_rng(kind: str, seed: int, part: int | str = 0) -> random.Random:
    return random.Random(f"sluice-example:{kind}:{seed}:{part}")


def pick(rng: random.Random, values: tuple[str, ...]) -> str:
    return values[int(rng.random() * len(values))]


def skewed(u: float, strength: float) -> float:
    """Map a uniform draw in [0, 1) onto [0, 1), favouring small values (bestsellers, regulars).

    Only multiplication and addition, which IEEE 754 rounds identically everywhere (unlike `**`,
    whose last bit depends on the platform's libm), so the data is the same on every machine.
    """
    return u * (1.0 - strength + strength * u)


def micros(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def price_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def product_prices(seed: int) -> list[int]:
    """List price in cents of each product, in product order."""
    rng = seeded_rng("products", seed)
    prices = []
    for index in range(PRODUCT_COUNT):
        category = CATEGORIES[index % len(CATEGORIES)]
        low, high = _PRICE_RANGE_CENTS[category]
        prices.append((low + int(rng.random() * (high - low))) // 100 * 100 + 99)
    return prices


def products(seed: int = DEFAULT_SEED) -> pa.Table:
    """The product catalogue: `PRODUCT_COUNT` products across `CATEGORIES`, prices as strings."""
    rng = seeded_rng("product-names", seed)
    prices = product_prices(seed)
    columns: dict[str, list[object]] = {name: [] for name in PRODUCTS_SCHEMA.names}
    for index, price in enumerate(prices):
        category = CATEGORIES[index % len(CATEGORIES)]
        name = f"{pick(rng, _ADJECTIVES)} {pick(rng, _NOUNS[category])} {index // 7 + 1}"
        updated = FEED_START - timedelta(days=1 + int(rng.random() * 365))
        columns["product_id"].append(f"P{index + 1:04d}")
        columns["product_name"].append(name)
        columns["category"].append(category)
        columns["list_price"].append(price_text(price))
        columns["updated_at"].append(micros(updated))
    return pa.Table.from_pydict(columns, schema=PRODUCTS_SCHEMA)


def customers(rows: int | None = None, seed: int = DEFAULT_SEED) -> pa.Table:
    """The customer extract, PII included, for a feed of `rows` order records a day.

    About `CUSTOMER_DUPLICATE_RATE` of the customers appear twice: the second version follows
    the first, with a later `updated_at` and a changed e-mail address.
    """
    count = customer_count(rows or example_rows())
    rng = seeded_rng("customers", seed)
    columns: dict[str, list[object]] = {name: [] for name in CUSTOMERS_SCHEMA.names}

    def add(
        cid: str, first: str, last: str, email: str, country: str, signup: str, at: int
    ) -> None:
        for name, value in zip(
            CUSTOMERS_SCHEMA.names, (cid, first, last, email, country, signup, at), strict=True
        ):
            columns[name].append(value)

    for index in range(count):
        first, last = pick(rng, _FIRST_NAMES), pick(rng, _LAST_NAMES)
        local = f"{first}.{last}" if rng.random() < 0.6 else f"{first[0]}{last}"
        email = f"{local}{index + 1}@{pick(rng, _EMAIL_DOMAINS)}"
        roll = rng.random()
        if roll < 0.7:
            email = email.lower()
        elif roll < 0.72:
            email = f" {email} "
        country = COUNTRIES[int(len(COUNTRIES) * skewed(rng.random(), 1.0))]
        signup_day = SIGNUP_START + timedelta(days=int(rng.random() * SIGNUP_DAYS))
        signup = signup_day.isoformat() if rng.random() >= 0.005 else ""
        updated = datetime.combine(signup_day, datetime.min.time()) + timedelta(
            seconds=int(rng.random() * 86_400)
        )
        cid = f"C{index + 1:07d}"
        add(cid, first, last, email, country, signup, micros(updated))
        if rng.random() < CUSTOMER_DUPLICATE_RATE:
            moved = f"{first}.{last}.{index + 1}@{pick(rng, _EMAIL_DOMAINS)}".lower()
            later = FEED_START + timedelta(seconds=int(rng.random() * CUSTOMER_UPDATE_DAYS * DAY_S))
            add(cid, first, last, moved, country, signup, micros(later))
    return pa.Table.from_pydict(columns, schema=CUSTOMERS_SCHEMA)
