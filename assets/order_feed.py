"""The shop API's order feed, raw as it arrived (seeds, sizes and prices: `assets.source`).

The order feed is served one day at a time, like an API queried with `placed_on=<day>`: the
records of a day depend only on the seed, the day and the size (orders per day), never on
which other days were asked for or in which order, so any day can be rebuilt alone and comes
out identical. The feed starts on `FIRST_DAY` (2024-01-01) and has no last day. Each day is
served in its final state: every record the API will ever deliver for orders placed that day,
including late arrivals and redeliveries ingested days afterwards. (For the last few days
before today that means `ingested_at` values in the future: the price of a feed that does not
read the clock.)

The data is "raw as it arrived": nearly every column is a string, and a small share of the
records is dirty the way real feeds are:

* redeliveries: the same `order_id` delivered again later (a later `ingested_at`), usually with
  the status moved along its lifecycle; filed under the same day as the original;
* late arrivals: records ingested days after their `order_ts` (still filed under the day the
  order was placed);
* malformed records: unparseable timestamps, negative or non-numeric amounts, missing customer
  ids;
* cosmetic noise silver has to normalize: two timestamp formats, status casing and padding,
  e-mail casing and whitespace;
* orders for customers that are not (yet) in the customer extract.

Besides the raw strings, each order record carries two typed fields the API sets itself:
`order_date`, the day it is filed under (the day the order was placed, whatever its `order_ts`
string says), and `ingested_at`.

Orders stream as Arrow record batches of at most `BATCH_ROWS`; every (day, batch) has its own
generator, so a batch never depends on the ones before it and memory stays flat however many
rows are asked for. Redeliveries therefore only repeat orders of their own batch.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any

import pyarrow as pa

from assets.source import (
    DAY_S,
    DEFAULT_SEED,
    FIRST_DAY,
    PRODUCT_COUNT,
    customer_count,
    example_rows,
    micros,
    pick,
    price_text,
    product_prices,
    seeded_rng,
    skewed,
)

BATCH_ROWS = 100_000

STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
NEXT_STATUS = {"placed": "paid", "paid": "shipped", "shipped": "delivered", "delivered": "returned"}
CHANNELS = ("web", "app", "marketplace")

# Shares of order records (approximate: each is drawn independently per record).
DUPLICATE_RATE = 0.02  # record is a redelivery of an order already delivered in the batch
LATE_RATE = 0.03  # original record ingested 1 to 6 days after order_ts
MAX_DELAY_DAYS = 10  # no record is ingested later than this after its order_ts
BAD_TIMESTAMP_RATE = 0.004  # order_ts cannot be parsed
BAD_AMOUNT_RATE = 0.004  # amount is negative or not a number
MISSING_CUSTOMER_RATE = 0.003  # customer_id is null or empty
UNKNOWN_CUSTOMER_RATE = 0.002  # customer_id absent from the customer extract
MAX_REDELIVERIES = 3  # per order

ORDERS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("quantity", pa.string()),
        pa.field("amount", pa.string()),
        pa.field("status", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("order_ts", pa.string()),
        pa.field("order_date", pa.date32(), nullable=False),
        pa.field("ingested_at", pa.timestamp("us"), nullable=False),
    ]
)
_BAD_TIMESTAMPS = ("", "N/A", "not a timestamp", "2024-02-30 12:00:00", "2024-13-01 08:00:00")
_BAD_AMOUNTS = ("", "N/A", "NaN-ish", "12,50")
_BAD_TS_BELOW = BAD_TIMESTAMP_RATE
_BAD_AMOUNT_BELOW = _BAD_TS_BELOW + BAD_AMOUNT_RATE
_MISSING_CUSTOMER_BELOW = _BAD_AMOUNT_BELOW + MISSING_CUSTOMER_RATE
_UNKNOWN_CUSTOMER_BELOW = _MISSING_CUSTOMER_BELOW + UNKNOWN_CUSTOMER_RATE


_STATUS_WEIGHTS = {
    "placed": 0.08,
    "paid": 0.12,
    "shipped": 0.18,
    "delivered": 0.50,
    "cancelled": 0.07,
    "returned": 0.05,
}
_STATUS_BOUNDS = list(accumulate(_STATUS_WEIGHTS.values()))[:-1]
_STATUS_BY_BOUND = tuple(_STATUS_WEIGHTS)


def _noisy(status: str, roll: float) -> str:
    """`status` as the source sends it: 2% of the values shouted or padded."""
    if roll < 0.01:
        return status.upper()
    if roll < 0.02:
        return f" {status.capitalize()} "
    return status


def _ids(prefix: str, numbers: pa.Array, width: int) -> pa.Array:
    import pyarrow.compute as pc  # here, not at the top: 30 ms that every `sluice plan` would pay

    digits = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _amounts(cents: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    whole = pc.divide(cents, 100)  # integer division
    fraction = pc.utf8_lpad(
        pc.cast(pc.subtract(cents, pc.multiply(whole, 100)), pa.string()), 2, "0"
    )
    return pc.binary_join_element_wise(pc.cast(whole, pa.string()), fraction, ".")


def _check_day(day: date) -> None:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"expected a datetime.date, got {day!r}")
    if day < FIRST_DAY:
        raise ValueError(f"the order feed starts on {FIRST_DAY}; there is nothing on {day}")


def order_batch(
    day: date, batch: int, rows: int, seed: int = DEFAULT_SEED, batch_rows: int = BATCH_ROWS
) -> pa.RecordBatch:
    """Order records `batch * batch_rows` up to `rows` (exclusive) of `day`'s `rows` records.

    A pure function of its arguments: it draws from a generator seeded with the seed, the day
    and the batch number only. Record `i` is placed at about `i / rows` of the way through the
    day, so order ids (`O<yyyymmdd>-<i+1>`) grow with time; redeliveries repeat an id and
    leave a gap in the sequence. The loop draws plain numbers per record; Arrow compute renders
    them as the source's strings, and a few records get a defect rendered in place (`*_defect`,
    null when none). Every record has `order_date == day`.
    """
    import pyarrow.compute as pc

    _check_day(day)
    start, stop = batch * batch_rows, min(rows, (batch + 1) * batch_rows)
    if start >= stop:
        raise ValueError(f"batch {batch} is empty for {rows} rows of {batch_rows} per batch")
    rng = seeded_rng("orders", seed, f"{day.isoformat()}/{batch}")
    draw = rng.random
    prices = product_prices(seed)
    n_customers = customer_count(rows)
    day_start = datetime.combine(day, datetime.min.time())
    order_no: list[int] = []
    customer_no: list[int | None] = []
    customer_defect: list[str | None] = []
    product_no: list[int] = []
    quantity: list[int] = []
    cents: list[int] = []
    amount_defect: list[str | None] = []
    status: list[str] = []
    channel: list[str] = []
    placed_s: list[int] = []  # seconds since the day's midnight
    iso: list[bool] = []
    ts_defect: list[str | None] = []
    ingested_s: list[int] = []
    # Per order of this batch: [position of its latest version, true status, redeliveries].
    delivered: list[list[Any]] = []
    copied = (
        order_no, customer_no, customer_defect, product_no, quantity, cents, amount_defect,
        channel, placed_s, iso, ts_defect,
    )  # fmt: skip

    for i in range(start, stop):
        if delivered and draw() < DUPLICATE_RATE:
            # Redeliver one of the last few hundred orders, usually with a status update.
            order = delivered[len(delivered) - 1 - int(draw() * min(len(delivered), 500))]
            last, true_status, count = order
            if count < MAX_REDELIVERIES:
                if true_status in NEXT_STATUS and draw() < 0.7:
                    true_status = NEXT_STATUS[true_status]
                order[:] = [len(order_no), true_status, count + 1]
                for column in copied:
                    column.append(column[last])
                status.append(_noisy(true_status, draw()))
                ingested_s.append(ingested_s[last] + 3_600 + int(draw() * 82_800))
                continue

        placed = int((i + draw()) * DAY_S / rows)  # seconds since the day's midnight UTC
        customer: int | None = int(n_customers * skewed(draw(), 1.0)) + 1
        product = int(PRODUCT_COUNT * skewed(draw(), 0.6))
        qty = 1 + int(4 * skewed(skewed(draw(), 1.0), 1.0))
        discount = (0, 0, 0, 0, 0, 0, 0, 10, 10, 25)[int(draw() * 10)]
        true_status = _STATUS_BY_BOUND[bisect(_STATUS_BOUNDS, draw())]
        if draw() < LATE_RATE:
            ingested = placed + DAY_S + int(draw() * 5 * DAY_S)
        else:
            ingested = placed + 60 + int(draw() * 7_140)
        amount = (prices[product] * qty * (100 - discount) + 50) // 100
        bad_ts = bad_amount = bad_customer = None

        roll = draw()
        if i == 0:
            roll = 1.0  # a day's first record is always clean: a tiny feed still has an order
        if roll < _BAD_TS_BELOW:
            if draw() < 0.7:
                bad_ts = pick(rng, _BAD_TIMESTAMPS)
            else:  # day-first, without seconds
                bad_ts = (day_start + timedelta(seconds=placed)).strftime("%d/%m/%Y %H:%M")
        elif roll < _BAD_AMOUNT_BELOW:
            bad_amount = f"-{price_text(amount)}" if draw() < 0.5 else pick(rng, _BAD_AMOUNTS)
        elif roll < _MISSING_CUSTOMER_BELOW:
            customer = None  # null, or an empty string half of the time
            bad_customer = "" if draw() < 0.5 else None
        elif roll < _UNKNOWN_CUSTOMER_BELOW:
            customer = n_customers + 1 + int(draw() * 1_000)

        delivered.append([len(order_no), true_status, 0])
        order_no.append(i + 1)
        customer_no.append(customer)
        customer_defect.append(bad_customer)
        product_no.append(product + 1)
        quantity.append(qty)
        cents.append(amount)
        amount_defect.append(bad_amount)
        status.append(_noisy(true_status, draw()))
        channel.append(CHANNELS[int(len(CHANNELS) * skewed(draw(), 0.5))])
        placed_s.append(placed)
        iso.append(draw() < 0.15)  # the app client sends ISO-8601 UTC
        ts_defect.append(bad_ts)
        ingested_s.append(ingested)

    epoch_s = micros(day_start) // 1_000_000
    placed_at = pc.cast(pc.add(pa.array(placed_s, pa.int64()), epoch_s), pa.timestamp("s"))
    plain_ts = pc.cast(placed_at, pa.string())  # 2024-01-31 12:34:56
    iso_ts = pc.binary_join_element_wise(pc.replace_substring(plain_ts, " ", "T"), "Z", "")
    ingested_at = pc.multiply(pc.add(pa.array(ingested_s, pa.int64()), epoch_s), 1_000_000)
    return pa.RecordBatch.from_arrays(
        [
            _ids(f"O{day:%Y%m%d}-", pa.array(order_no, pa.int64()), 7),
            pc.coalesce(
                pa.array(customer_defect, pa.string()),
                _ids("C", pa.array(customer_no, pa.int64()), 7),
            ),
            _ids("P", pa.array(product_no, pa.int64()), 4),
            pc.cast(pa.array(quantity, pa.int64()), pa.string()),
            pc.coalesce(
                pa.array(amount_defect, pa.string()), _amounts(pa.array(cents, pa.int64()))
            ),
            pa.array(status, pa.string()),
            pa.array(channel, pa.string()),
            pc.coalesce(
                pa.array(ts_defect, pa.string()),
                pc.if_else(pa.array(iso, pa.bool_()), iso_ts, plain_ts),
            ),
            pa.array([day] * len(order_no), pa.date32()),
            pc.cast(ingested_at, pa.timestamp("us")),
        ],
        schema=ORDERS_SCHEMA,
    )


def days(first: date, end: date | None = None) -> list[date]:
    """The days from `first` up to `end` (exclusive; default: just `first`)."""
    end = end or first + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((end - first).days)]


def order_batches(
    first: date,
    end: date | None = None,
    rows: int | None = None,
    seed: int = DEFAULT_SEED,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """The feed of the days `[first, end)` (default: the day `first`), batch by batch, day by
    day, generated lazily; `rows` records per day."""
    rows = rows or example_rows()
    for day in days(first, end):
        for batch in range(-(-rows // batch_rows)):
            yield order_batch(day, batch, rows, seed, batch_rows)


def orders_reader(
    first: date,
    end: date | None = None,
    rows: int | None = None,
    seed: int = DEFAULT_SEED,
    batch_rows: int = BATCH_ROWS,
) -> pa.RecordBatchReader:
    """The feed of the days `[first, end)` as a stream: one batch in memory at a time."""
    for day in days(first, end):
        _check_day(day)  # fail here, not in the middle of a stream
    return pa.RecordBatchReader.from_batches(
        ORDERS_SCHEMA, order_batches(first, end, rows, seed, batch_rows)
    )


def orders(
    first: date, end: date | None = None, rows: int | None = None, seed: int = DEFAULT_SEED
) -> pa.Table:
    """The feed of the days `[first, end)` as one table (convenient for small sizes and tests)."""
    return orders_reader(first, end, rows, seed).read_all()
