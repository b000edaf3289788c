"""Every code a client can meet is registered once, and the README says what the registry says.

The source is read, not run: each ``code=`` of a raise site, each ``{"code": ...}`` built by
hand, each status word a Lua script answers with must be a registered
:class:`~livecast.error_codes.ErrorCode` (or one of the few script outcomes that a Python
caller handles before anything reaches a client), and a raise site's class must have its
code's status.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import livecast
from livecast.error_codes import CloseCode, ErrorCode
from livecast.errors import ApiError, Conflict, NotFound

ROOT = Path(livecast.__file__).parent
README = (ROOT.parent / "README.md").read_text()

# Script outcomes that are not errors, or that the Python caller turns into a code of its own;
# none reaches a client as it is.
SCRIPT_OUTCOMES = {
    "ok": "success",
    "added": "cart_add.lua: the line was added",
    "exists": "cart_add.lua, reserve.lua: the same line or hold is there already (a replay)",
    "created": "grant.lua, product_put.lua: a new grant or product",
    "updated": "grant.lua, product_put.lua: an existing one changed",
    "revoked": "grant.lua: the grant was removed",
    "dup": "post.lua: a resent client id, answered as the first post",
    "already_ended": "deal_end.lua, auction_end.lua: ending an ended one is a no-op",
    "not_due": "deal_end.lua, auction_end.lua: the sweeper came early; it tries again",
    "error": "reserve.lua: a script fault, raised as a 500",
    "not_owner": "grant.lua, product_put.lua, stock.lua: answered as not_product_owner",
    "not_found": "streams' transition.lua, update.lua: answered as stream_not_found",
    "illegal": "streams' transition.lua: answered as illegal_state; payment_move.lua: the "
    "test provider's payment is neither authorized nor in the target state (a ValueError)",
    "missing": "payment_move.lua: no such payment (the provider raises LookupError)",
    "same": "payment_move.lua: the payment is in the target state already (a replay)",
    "moved": "payment_move.lua: the payment moved to the target state",
    "accepted": "auction_bid.lua: the bidder leads",
    "outbid": "auction_bid.lua: the bid raised the price; the leader's maximum was higher",
    "max_raised": "auction_bid.lua: the leader raised their own maximum",
    "sold": "auction_end.lua: ended with a winner, whose hold was made",
    "unsold": "auction_end.lua: ended with no bid; the unit went back",
    "cancelled": "auction_cancel.lua: cancelled before its first bid; poll_close.lua, "
    "giveaway_cancel.lua: cancelled",
    "voted": "poll_vote.lua: a first vote",
    "changed": "poll_vote.lua: the vote moved to another option",
    "unchanged": "poll_vote.lua: the same option again (a replay)",
    "replayed": "poll_start.lua, giveaway_enter.lua: the same key or person again (a replay)",
    "entered": "giveaway_enter.lua: a new entry",
    "drawn": "giveaway_draw.lua: a winner was drawn, whose hold was made",
    "no_entries": "giveaway_draw.lua: nobody entered; the unit went back",
    "already_drawn": "giveaway_draw.lua: drawing a drawn one finishes what it left undone",
    "over": "payment_move.lua: a capture of more than was authorized (a ValueError)",
    "pending": "groupbuy_join.lua: joined; the payment is being authorized",
    "replay": "groupbuy_join.lua: a retried key, answered with the member as it is",
    "authorized": "groupbuy_confirm.lua: the member counts",
    "already": "groupbuy_confirm.lua: the member was confirmed before (a replay)",
    "leaving": "groupbuy_leave.lua: the member left; the payment is being voided",
    "already_closed": "groupbuy_close.lua: closing a closed one is a no-op",
    "settled": "groupbuy_settle.lua: the member is captured or voided now",
    "running": "groupbuy_finish.lua: not closed yet; nothing to finish",
    "unsettled": "groupbuy_finish.lua: members are left to settle; the sweep goes on",
    "already_finished": "groupbuy_finish.lua: finishing a finished one is a no-op",
    "held": "knockdown_buy.lua: the buyer's hold was made",
    "stepped": "knockdown_step.lua: the price dropped a step",
    "at_floor": "knockdown_step.lua: the price is at the floor; nothing to step",
    "not_running": "knockdown_step.lua: ended, or in taps mode; nothing to step",
    "ended": "knockdown_end.lua: the knock-down ended now",
}
_LUA_STATUS = re.compile(
    r"\{'([a-z_]+)'|status = '([a-z_]+)'|answer\('([a-z_]+)'|return '([a-z_]+)'"
)


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.name != "error_codes.py")


def _error_classes() -> dict[str, type[ApiError]]:
    for module in pkgutil.walk_packages(livecast.__path__, "livecast."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: dict[str, type[ApiError]] = {}
    pending: list[type[ApiError]] = [ApiError]
    while pending:
        cls = pending.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f"two error classes {cls.__name__}"
        pending.extend(cls.__subclasses__())
    return found


def _registered(node: ast.expr) -> ErrorCode | None:
    """The code ``node`` names: ``ErrorCode.X`` or a string literal (which must be registered)."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ErrorCode"
    ):
        return ErrorCode[node.attr]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ErrorCode.of(node.value)
    return None


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def test_every_code_in_the_source_is_registered_with_its_class_status() -> None:
    classes = _error_classes()
    problems: list[str] = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT.parent)}:{getattr(node, 'lineno', '?')}"
            try:
                if isinstance(node, ast.Call):
                    name = _call_name(node)
                    if name in ("close", "labels"):
                        continue
                    if name == "raise_for_status" and node.args:
                        _registered(node.args[0])
                    for keyword in node.keywords:
                        if keyword.arg != "code":
                            continue
                        if isinstance(keyword.value, ast.Constant):
                            problems.append(f"{where}: name the code as an ErrorCode member")
                        code = _registered(keyword.value)
                        cls = classes.get(name or "")
                        if code is None or cls is None or cls is ApiError:
                            continue
                        if cls.default_code.status != code.status:
                            problems.append(
                                f"{where}: {name} is {cls.default_code.status}, "
                                f"{code} is {code.status}"
                            )
                elif isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if isinstance(key, ast.Constant) and key.value == "code":
                            _registered(value)
            except (KeyError, ValueError) as exc:
                problems.append(f"{where}: register it in livecast/error_codes.py ({exc})")
    assert not problems, "\n".join(problems)


def test_every_script_status_word_is_a_code_or_a_handled_outcome() -> None:
    words: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.lua")):
        for match in _LUA_STATUS.finditer(path.read_text()):
            word = next(group for group in match.groups() if group)
            words.setdefault(word, path.name)
    unknown = {
        f"{word} ({script})"
        for word, script in words.items()
        if word not in SCRIPT_OUTCOMES and word not in ErrorCode._value2member_map_
    }
    assert not unknown, f"register these in livecast/error_codes.py: {sorted(unknown)}"
    assert set(SCRIPT_OUTCOMES) <= set(words), "an outcome no script answers with any more"


def test_a_script_status_word_raises_with_its_registered_status() -> None:
    from livecast.inventory.errors import raise_for_status

    with pytest.raises(NotFound) as missing:
        raise_for_status("unknown_sku", "BOOT-42")
    assert (missing.value.status, missing.value.message) == (
        404,
        "BOOT-42: no product with this SKU",
    )
    with pytest.raises(Conflict) as gone:
        raise_for_status("sold_out", "BOOT-42", left=0)
    assert gone.value.to_json() == {
        "error": {"code": "sold_out", "message": "BOOT-42: sold out", "left": 0}
    }
    with pytest.raises(ValueError, match="no_such_word"):
        raise_for_status("no_such_word", "BOOT-42")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _rows(section: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if re.match(r"\| \d{3,4} \|", line)
    ]


def test_the_readme_error_table_lists_every_code_with_its_status() -> None:
    listed: dict[str, int] = {}
    for status, _when, codes in _rows(_section("Errors")):
        for code in re.findall(r"`([a-z_]+)`", codes):
            assert code not in listed, f"{code} is listed twice"
            listed[code] = int(status)
    registered = {code.value: code.status for code in ErrorCode}
    assert listed == registered


def test_the_readme_names_exactly_the_codes_worth_retrying() -> None:
    errors = " ".join(_section("Errors").split())
    sentence = errors[errors.index("Sending the same request again") : errors.index("Every code")]
    named = set(re.findall(r"`([a-z_]+)`", sentence.split("):", 1)[1]))
    assert named == {code.value for code in ErrorCode if code.retry}


def test_the_readme_close_codes_say_what_the_registry_says() -> None:
    listed = {
        int(code): reconnect
        for code, _when, reconnect in _rows(_section("Live events (WebSocket)"))
    }
    assert listed == {code.value: "reconnects" if code.reconnect else "stops" for code in CloseCode}


def test_codes_are_strings_and_close_codes_integers_on_the_wire() -> None:
    import msgspec

    assert msgspec.json.encode({"code": ErrorCode.SOLD_OUT}) == b'{"code":"sold_out"}'
    assert ErrorCode.of("sold_out") is ErrorCode.SOLD_OUT
    assert int(CloseCode.TRY_AGAIN_LATER) == 1013


def test_the_pages_friendly_words_are_for_registered_codes() -> None:
    """A friendly message keyed by a code the server never sends is never shown."""
    source = (ROOT.parent / "web" / "js" / "ui.js").read_text()
    table = source[source.index("const KIND_ERRORS = {") :]
    keys = re.findall(r"^\s+(\w+):", table[: table.index("};")], re.MULTILINE)
    assert "sold_out" in keys
    assert set(keys) - {code.value for code in ErrorCode} == {"network"}  # the page's own


def test_the_pages_stop_after_exactly_the_close_codes_that_say_do_not_reconnect() -> None:
    source = (ROOT.parent / "web" / "js" / "events.js").read_text()
    table = source[source.index("const FINAL_CLOSES = {") :]
    finals = {int(code) for code in re.findall(r"(\d{4}):", table[: table.index("};")])}
    assert finals == {int(code) for code in CloseCode if not code.reconnect}
