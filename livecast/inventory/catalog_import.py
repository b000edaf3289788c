"""Bulk catalog import from JSON lines or CSV, row by row.

Each row is validated whole, then written whole by one script (``product_put.lua``), so a
row is imported completely or not at all; a bad row is reported with its number and the
reason and does not stop the others.

JSON lines: one object per line, the fields of ``PUT /api/products/{sku}`` plus ``sku``::

    {"sku": "TEE-M", "title": "Tee", "price": {"amount_minor": 1999, "currency": "EUR"}}

CSV: a header row naming the columns ``sku,title,price_minor,currency`` and optionally
``description,image_url,stock,owner``; ``price_minor`` and ``stock`` are whole numbers.
Rows end at LF, CRLF or a bare CR; a quoted field may span lines.

Each row is written as its importer may: a seller creates products of their own and
replaces only those (a row naming another ``owner``, or a product someone else owns, is
reported as ``not_product_owner``); an admin (and ``livecast import-catalog``) may write
any product and give it an owner.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from livecast.config import Settings
from livecast.display_text import check_line, check_multiline
from livecast.embedded_redis import DataDirBusy, EmbeddedRedis
from livecast.error_codes import ErrorCode
from livecast.errors import ApiError, BadRequest, PayloadTooLarge
from livecast.ids import is_subject
from livecast.inventory.catalog import (
    Catalog,
    Description,
    ImageUrl,
    Owner,
    ProductFields,
    Sku,
    Stock,
    Title,
)
from livecast.inventory.money import Money
from livecast.inventory.reserve import Reservations
from livecast.redisdb import KeySpace, open_redis

__all__ = [
    "ImportReport",
    "RowError",
    "import_rows",
    "parse_csv",
    "parse_file",
    "parse_json_lines",
    "run_import",
]

_WHOLE = re.compile(r"^[0-9]+$")
# JSON lines end at LF, CRLF or a bare CR; other separators (U+2028, FF, ...) are data.
_LINE_END = re.compile(r"\r\n|\r|\n")
_CSV_REQUIRED = {"sku", "title", "price_minor", "currency"}
_CSV_KNOWN = _CSV_REQUIRED | {"description", "image_url", "stock", "owner"}


class ImportRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    title: Title
    price: Money
    description: Description = ""
    image_url: ImageUrl | None = None
    stock: Stock | None = None
    owner: Owner | None = None

    def __post_init__(self) -> None:
        check_line("title", self.title)
        check_multiline("description", self.description)


class RowError(msgspec.Struct, frozen=True):
    row: int
    sku: str | None
    code: str
    message: str


class ImportReport(msgspec.Struct, frozen=True):
    rows: int
    created: int
    updated: int
    errors: list[RowError]


Parsed = list[tuple[int, ImportRow | RowError]]


def _row_error(row: int, sku: Any, code: ErrorCode, message: str) -> RowError:
    return RowError(row=row, sku=sku if isinstance(sku, str) else None, code=code, message=message)


def parse_json_lines(text: str, *, max_rows: int) -> Parsed:
    parsed: Parsed = []
    decoder = msgspec.json.Decoder(ImportRow, strict=True)
    lines = [(n, line) for n, line in enumerate(_LINE_END.split(text), 1) if line.strip()]
    _check_count(len(lines), max_rows)
    for number, line in lines:
        try:
            parsed.append((number, decoder.decode(line)))
        except msgspec.ValidationError as exc:
            sku = _guess_sku(line)
            parsed.append((number, _row_error(number, sku, ErrorCode.INVALID_FIELD, str(exc))))
        except msgspec.DecodeError as exc:
            parsed.append((number, _row_error(number, None, ErrorCode.MALFORMED_JSON, str(exc))))
    return parsed


def _guess_sku(line: str) -> Any:
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    return value.get("sku") if isinstance(value, dict) else None


def parse_csv(text: str, *, max_rows: int) -> Parsed:
    # newline="": rows end at LF, CRLF or a bare CR, and a quoted field keeps its own.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise BadRequest(f"CSV header is malformed: {exc}", code=ErrorCode.MALFORMED_CSV) from None
    if len(set(columns)) != len(columns):
        raise BadRequest("CSV header names a column twice", code=ErrorCode.MALFORMED_CSV)
    header = set(columns)
    if not header >= _CSV_REQUIRED:
        missing = ", ".join(sorted(_CSV_REQUIRED - header))
        raise BadRequest(f"CSV header lacks columns: {missing}", code=ErrorCode.MALFORMED_CSV)
    if header - _CSV_KNOWN:
        unknown = ", ".join(sorted(header - _CSV_KNOWN))
        raise BadRequest(f"CSV header has unknown columns: {unknown}", code=ErrorCode.MALFORMED_CSV)
    parsed: Parsed = []
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise BadRequest(f"CSV is malformed: {exc}", code=ErrorCode.MALFORMED_CSV) from None
    _check_count(len(rows), max_rows)
    for number, raw in enumerate(rows, 2):
        parsed.append((number, _csv_row(number, raw)))
    return parsed


def _csv_row(number: int, raw: dict[str | Any, Any]) -> ImportRow | RowError:
    sku = raw.get("sku")
    if None in raw or any(v is None for v in raw.values()):
        return _row_error(
            number, sku, ErrorCode.INVALID_FIELD, "row has a different number of columns"
        )
    price, stock = raw["price_minor"].strip(), (raw.get("stock") or "").strip()
    if not _WHOLE.match(price):
        return _row_error(
            number, sku, ErrorCode.INVALID_FIELD, f"price_minor {price!r} is not a whole number"
        )
    if stock and not _WHOLE.match(stock):
        return _row_error(
            number, sku, ErrorCode.INVALID_FIELD, f"stock {stock!r} is not a whole number"
        )
    data: dict[str, Any] = {
        "sku": sku,
        "title": raw["title"],
        "price": {"amount_minor": int(price), "currency": raw["currency"].strip()},
        "description": raw.get("description") or "",
        "image_url": (raw.get("image_url") or "").strip() or None,
        "stock": int(stock) if stock else None,
        "owner": (raw.get("owner") or "").strip() or None,
    }
    try:
        return msgspec.convert(data, ImportRow, strict=True)
    except msgspec.ValidationError as exc:
        return _row_error(number, sku, ErrorCode.INVALID_FIELD, str(exc))


def _check_count(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise PayloadTooLarge(f"{rows} rows is over the {max_rows} row limit")


async def import_rows(
    catalog: Catalog,
    parsed: Parsed,
    *,
    editor: str | None = None,
    default_owner: str | None = None,
    owner_changed: Callable[[str], Awaitable[None]] | None = None,
) -> ImportReport:
    """Write each good row as ``editor`` (a seller's subject; None for an admin); a row
    naming no owner is ``default_owner``'s. ``owner_changed(sku)`` is awaited for each
    existing product a row gave another owner."""
    created = updated = 0
    errors: list[RowError] = []
    for number, item in parsed:
        if isinstance(item, RowError):
            errors.append(item)
            continue
        if not item.title.strip():
            errors.append(_row_error(number, item.sku, ErrorCode.INVALID_FIELD, "title is blank"))
            continue
        fields = ProductFields(
            title=item.title.strip(),
            price=item.price,
            description=item.description,
            image_url=item.image_url,
            stock=item.stock,
            owner=item.owner or default_owner,
        )
        try:
            product, was_created, owner_before = await catalog.put(item.sku, fields, editor=editor)
        except ApiError as exc:
            errors.append(_row_error(number, item.sku, exc.code, exc.message))
            continue
        created += was_created
        updated += not was_created
        if not was_created and product.owner != owner_before and owner_changed is not None:
            await owner_changed(item.sku)
    return ImportReport(rows=len(parsed), created=created, updated=updated, errors=errors)


def parse_file(path: Path, fmt: str | None, *, max_rows: int) -> Parsed:
    """Parse a catalog file; ``fmt`` is ``jsonl`` or ``csv`` (default: by file suffix)."""
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    text = path.read_text(encoding="utf-8-sig")
    return (
        parse_csv(text, max_rows=max_rows)
        if kind == "csv"
        else parse_json_lines(text, max_rows=max_rows)
    )


def run_import(
    settings: Settings, path: Path, fmt: str | None, *, owner: str | None = None
) -> tuple[ImportReport, int]:
    """``livecast import-catalog``: import into the configured Redis, as an admin would;
    rows that name no owner are ``owner``'s (None: they keep theirs, new ones have none).

    With no ``redis.url`` the data dir's embedded Redis is used: started for the import,
    or, when a server already runs on that data dir, reached through its socket.
    """
    if owner is not None and not is_subject(owner):
        raise BadRequest(f"owner {owner!r} is not a token subject (1-64 of A-Z a-z 0-9 . _ : @ -)")
    parsed = parse_file(path, fmt, max_rows=settings.inventory.import_max_rows)
    report = asyncio.run(_import_into(settings, parsed, owner))
    return report, 0 if not report.errors else 1


async def _import_into(settings: Settings, parsed: Parsed, owner: str | None) -> ImportReport:
    embedded: EmbeddedRedis | None = None
    url = settings.redis.url
    if not url:
        embedded = EmbeddedRedis(settings.data_dir)
        try:
            await asyncio.to_thread(embedded.start)
            url = embedded.url
        except DataDirBusy:
            url, embedded = EmbeddedRedis(settings.data_dir).url, None
    try:
        redis = await open_redis(url, settings.redis)
        try:
            keys = KeySpace(settings.redis.key_prefix)
            reservations = Reservations(redis, keys)
            catalog = Catalog(redis, keys, reservations)
            return await import_rows(catalog, parsed, default_owner=owner)
        finally:
            await redis.aclose()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
