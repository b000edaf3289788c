"""Bulk catalog import, over HTTP and through ``livecast import-catalog``: good rows go in
whole, bad rows are reported by number and leave nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from livecast.auth import Role
from livecast.cli import main as cli_main
from tests.conftest import Client, MakeToken, bearer
from tests.inventory.conftest import assert_error, put_product


def _row(sku: str, amount: object, currency: str = "EUR", **extra: object) -> str:
    price = {"amount_minor": amount, "currency": currency}
    return json.dumps({"sku": sku, "title": f"Title {sku}", "price": price, **extra})


_JSONL = "\n".join(
    [
        _row("IMP-1", 100, stock=5),
        _row("IMP-2", 10.5),
        _row("IMP-3", 300, "eur"),
        "{not json",
        "",
        _row("bad sku", 1),
        _row("IMP-4", 400, "USD", image_url="https://img.example.com/4.png", stock=2),
        _row("HELD-1", 1, stock=0),
    ]
)

_CSV = """sku,title,description,image_url,price_minor,currency,stock
CSV-1,Mug,Big mug,https://img.example.com/m.jpg,1250,EUR,7
CSV-2,Cup,,,12.50,EUR,3
CSV-3,Jar,,,900,EUR,-1
CSV-4,Bowl,,javascript:x,900,EUR,1
CSV-5,Plate,,,800,EUR,
CSV-6,Spoon,,,200,GBP,
CSV-7,Fork,,,100
"""


async def test_json_lines_import_reports_rows(
    client: Client, make_token: MakeToken, app: Any
) -> None:
    from livecast.inventory.service import INVENTORY

    seller = make_token(Role.SELLER)
    await put_product(client, seller, "HELD-1", 2)
    await app[INVENTORY].reservations.reserve("HELD-1", 2, "buyer", "h1")
    resp = await client.post(
        "/api/products/import",
        data=_JSONL.encode(),
        headers={**bearer(seller), "Content-Type": "application/x-ndjson"},
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["rows"], report["created"], report["updated"]) == (7, 2, 0)
    errors = {e["row"]: (e["sku"], e["code"]) for e in report["errors"]}
    assert errors == {
        2: ("IMP-2", "invalid_field"),
        3: ("IMP-3", "invalid_field"),
        4: (None, "malformed_json"),
        6: ("bad sku", "invalid_field"),
        8: ("HELD-1", "below_committed"),
    }
    found = await (await client.get("/api/products", params=[("sku", s) for s in (
        "IMP-1", "IMP-2", "IMP-3", "IMP-4")])).json()  # fmt: skip
    assert [p["sku"] for p in found["products"]] == ["IMP-1", "IMP-4"]
    assert found["products"][1]["price"] == {"amount_minor": 400, "currency": "USD"}
    held = await (await client.get("/api/products/HELD-1")).json()
    assert (held["title"], held["held"]) == ("Product HELD-1", 2)  # the bad row left it whole


async def test_csv_import_reports_rows(client: Client, make_token: MakeToken) -> None:
    admin = make_token(Role.ADMIN)
    resp = await client.post(
        "/api/products/import",
        data=_CSV.encode(),
        headers={**bearer(admin), "Content-Type": "text/csv"},
    )
    report = await resp.json()
    assert (report["rows"], report["created"]) == (7, 3)
    assert {e["row"]: e["sku"] for e in report["errors"]} == {
        3: "CSV-2",
        4: "CSV-3",
        5: "CSV-4",
        8: "CSV-7",
    }
    mug = await (await client.get("/api/products/CSV-1")).json()
    assert (mug["price"]["amount_minor"], mug["stock"], mug["description"]) == (1250, 7, "Big mug")
    await assert_error(await client.get("/api/products/CSV-2"), 404, "unknown_sku")


async def test_bad_imports_are_refused_whole(client: Client, make_token: MakeToken) -> None:
    seller = make_token(Role.SELLER)
    url = "/api/products/import"
    await assert_error(
        await client.post(url, data=b"x", headers={**bearer(seller), "Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    await assert_error(
        await client.post(
            url, data=b"sku,title\nA,B\n", headers={**bearer(seller), "Content-Type": "text/csv"}
        ),
        400,
        "malformed_csv",
    )
    await assert_error(
        await client.post(
            url, data=b"\n\n", headers={**bearer(seller), "Content-Type": "application/x-ndjson"}
        ),
        422,
        "empty_import",
    )
    # A body that is not UTF-8 is malformed in the format it was sent as.
    for kind, code in (("text/csv", "malformed_csv"), ("application/x-ndjson", "malformed_json")):
        await assert_error(
            await client.post(
                url, data=b'{"sku": "\xff"}', headers={**bearer(seller), "Content-Type": kind}
            ),
            400,
            code,
        )
    viewer = make_token(Role.VIEWER)
    await assert_error(
        await client.post(
            url, data=_CSV.encode(), headers={**bearer(viewer), "Content-Type": "text/csv"}
        ),
        403,
        "forbidden",
    )
    await assert_error(await client.get("/api/products/CSV-1"), 404, "unknown_sku")


@pytest.fixture
def sync_redis(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
        client.delete(key)
    client.close()


def test_import_catalog_command(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sync_redis: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "livecast.toml"
    config.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n')
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(_CSV)
    argv = ["import-catalog", str(catalog), "--config", str(config), "--redis-url", redis_url]
    assert cli_main(argv) == 1  # some rows failed
    report = json.loads(capsys.readouterr().out)
    assert (report["created"], len(report["errors"])) == (3, 4)
    product = sync_redis.hgetall(f"{key_prefix}{{sku:CSV-1}}:product")
    assert product[b"title"] == b"Mug"
    assert product[b"available"] == b"7"

    good = tmp_path / "good.jsonl"
    good.write_text(_JSONL.splitlines()[0] + "\n")
    assert (
        cli_main(["import-catalog", str(good), "--config", str(config), "--redis-url", redis_url])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["created"] == 1
    assert cli_main(["import-catalog", str(tmp_path / "absent.csv"), "--config", str(config)]) == 2


def test_import_catalog_command_with_the_embedded_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(_JSONL.splitlines()[0] + "\n")
    assert cli_main(["import-catalog", str(catalog), "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 1
    assert cli_main(["import-catalog", str(catalog), "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["updated"] == 1  # persisted in the data dir


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
async def test_csv_import_takes_every_line_ending(
    client: Client, make_token: MakeToken, newline: str
) -> None:
    seller = make_token(Role.SELLER)
    rows = [
        "sku,title,description,price_minor,currency,stock",
        f'END-1,Mug,"two{newline}lines",1250,EUR,7',
        "END-2,Cup,,900,EUR,3",
        "END-3,Bad\x00title,,900,EUR,3",
        "",
    ]
    resp = await client.post(
        "/api/products/import",
        data=newline.join(rows).encode(),
        headers={**bearer(seller), "Content-Type": "text/csv"},
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert (report["rows"], report["created"]) == (3, 2)
    assert [(e["row"], e["sku"], e["code"]) for e in report["errors"]] == [
        (4, "END-3", "invalid_field")
    ]
    assert "title" in report["errors"][0]["message"]
    mug = await (await client.get("/api/products/END-1")).json()
    assert (mug["description"], mug["stock"]) == (f"two{newline}lines", 7)
    assert (await (await client.get("/api/products/END-2")).json())["stock"] == 3
    await assert_error(await client.get("/api/products/END-3"), 404, "unknown_sku")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
async def test_json_lines_import_takes_every_line_ending(
    client: Client, make_token: MakeToken, newline: str
) -> None:
    seller = make_token(Role.SELLER)
    # A line separator inside a JSON string is data, not a line end.
    lines = [_row("JL-1", 100, stock=1), _row("JL-2", 200, description="a\u2028b"), ""]
    resp = await client.post(
        "/api/products/import",
        data=newline.join(lines).encode(),
        headers={**bearer(seller), "Content-Type": "application/x-ndjson"},
    )
    report = await resp.json()
    assert (report["rows"], report["created"]) == (2, 1), report
    assert [(e["row"], e["sku"]) for e in report["errors"]] == [(2, "JL-2")]
    assert "U+2028" in report["errors"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b'sku,"title\rx,price_minor,currency\n',
        b"sku,title,title,price_minor,currency\nA,B,C,1,EUR\n",
        b'"sku\x00,title,price_minor,currency\n',
    ],
    ids=["cr-in-open-quote", "duplicate-column", "nul-header"],
)
async def test_malformed_csv_headers_are_400(
    client: Client, make_token: MakeToken, body: bytes
) -> None:
    resp = await client.post(
        "/api/products/import",
        data=body,
        headers={**bearer(make_token(Role.SELLER)), "Content-Type": "text/csv"},
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "malformed_csv"


def test_import_catalog_command_gives_rows_an_owner(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sync_redis: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "livecast.toml"
    config.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n')
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "sku,title,price_minor,currency,owner\rOWN-1,Mug,100,EUR,\rOWN-2,Cup,100,EUR,bo\r"
    )
    argv = ["import-catalog", str(catalog), "--config", str(config), "--redis-url", redis_url]
    assert cli_main([*argv, "--owner", "ana"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 2
    owners = [
        sync_redis.hget(f"{key_prefix}{{sku:{sku}}}:product", "owner") for sku in ("OWN-1", "OWN-2")
    ]
    assert owners == [b"ana", b"bo"]
    assert cli_main([*argv, "--owner", "not a subject"]) == 2
    assert "owner" in capsys.readouterr().err
