"""Every error code and WebSocket close code a client can meet, each once, with what it means.

An :class:`ErrorCode` is the ``code`` of a JSON error (``{"error": {"code", "message"}}``)
and of a WebSocket ``error`` event: one code per condition, whichever way it reaches the
client. Each carries its HTTP status (on a socket the status is not sent, but the code
means the same), a one-line meaning, and ``retry``: whether sending the same request again
unchanged can succeed (after ``Retry-After`` or ``retry_after_ms`` when the answer has
one). Raise sites name a member (``NotFound("...", code=ErrorCode.STREAM_NOT_FOUND)``);
the status comes from here. The Lua scripts answer with status words that are these codes'
values, so :class:`ErrorCode` turns them into codes.

A :class:`CloseCode` is how the server ends a live-events socket, with whether the client
should reconnect (with backoff, and ``?since=`` to recover) or stop and tell its user.

The README's error and close-code tables are checked against these two enums by
``tests/test_error_codes.py``, which also fails on a raise site or script status word
that names an unregistered code. To add a code: add a member here (in its package's
block), a row in the README's table, then raise it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum, unique

__all__ = ["CloseCode", "ErrorCode"]


@unique
class ErrorCode(StrEnum):
    """An error code: its value is what the client reads."""

    status: int
    retry: bool
    meaning: str

    def __new__(cls, code: str, status: int, retry: bool, meaning: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.retry = retry
        member.meaning = meaning
        return member

    @classmethod
    def of(cls, word: str) -> ErrorCode:
        """The code spelled ``word`` (a Lua script's status word); ValueError if none is."""
        return cls(word)  # type: ignore[call-arg]  # a lookup by value, not a new member

    # One per HTTP status: what a status means when nothing more precise applies, and
    # what the errors aiohttp answers by itself carry.
    BAD_REQUEST = "bad_request", 400, False, "the request is malformed"
    UNAUTHORIZED = "unauthorized", 401, False, "a token is needed and none was sent"
    FORBIDDEN = "forbidden", 403, False, "the token's role or stream may not do this"
    NOT_FOUND = "not_found", 404, False, "no such route or file"
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        405,
        False,
        "the route does not take this method (Allow lists those it does)",
    )
    CONFLICT = "conflict", 409, False, "the current state does not allow this"
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, False, "the body is over the size limit"
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        False,
        "the body's content type is not one this route takes",
    )
    EXPECTATION_FAILED = (
        "expectation_failed",
        417,
        False,
        "an Expect header other than 100-continue",
    )
    UNPROCESSABLE = "unprocessable", 422, False, "well-formed but not acceptable"
    INTERNAL = "internal", 500, False, "a server fault; it is logged"
    TIMEOUT = "timeout", 504, True, "the server did not answer in time"

    # The boundary: bodies, queries, tokens, storage.
    MALFORMED_JSON = (
        "malformed_json",
        400,
        False,
        "the body, line or frame does not parse as JSON (as msgpack on livecast.v1.msgpack), "
        "or a frame is not an object with a string type",
    )
    INVALID_FIELD = (
        "invalid_field",
        422,
        False,
        "a field is missing, unknown, of the wrong type or out of range",
    )
    INVALID_QUERY = "invalid_query", 400, False, "a query parameter is not valid"
    TOKEN_INVALID = "token_invalid", 401, False, "the token is malformed or forged"
    TOKEN_EXPIRED = "token_expired", 401, False, "the token has expired: get a new one"
    REDIS_UNAVAILABLE = (
        "redis_unavailable",
        503,
        True,
        "storage is unreachable, loading or failing over; nothing was changed",
    )

    # Streams.
    STREAM_NOT_FOUND = "stream_not_found", 404, False, "no stream with this id"
    ILLEGAL_STATE = "illegal_state", 409, False, "the stream's state does not allow this change"
    STREAM_ENDED = "stream_ended", 409, False, "the stream has ended"
    STREAM_NOT_LIVE = "stream_not_live", 409, False, "the stream is not live"
    EMPTY_PATCH = "empty_patch", 422, False, "the change names no field"

    # Media: WHIP, WHEP, recordings.
    MALFORMED_SDP = "malformed_sdp", 400, False, "the body is not an SDP offer or fragment"
    INVALID_RECORDING_NAME = (
        "invalid_recording_name",
        400,
        False,
        "no recording could have this name",
    )
    SESSION_NOT_FOUND = "session_not_found", 404, False, "no such WHIP/WHEP session"
    SESSION_NODE_UNREACHABLE = (
        "session_node_unreachable",
        503,
        True,
        "the node holding this WHIP/WHEP session does not answer",
    )
    RECORDING_NOT_FOUND = (
        "recording_not_found",
        404,
        False,
        "no such recording of the stream on this node",
    )
    PUBLISHER_ACTIVE = (
        "publisher_active",
        409,
        False,
        "the stream already has a publisher, here or on the node origin_url names",
    )
    ETAG_MISMATCH = "etag_mismatch", 412, False, "If-Match names an old session state"
    NO_MEDIA = "no_media", 422, False, "the offer has no audio or video"
    DUPLICATE_MEDIA = "duplicate_media", 422, False, "the offer has two sections of one kind"
    CODEC_UNSUPPORTED = (
        "codec_unsupported",
        422,
        False,
        "no codec in common with the relay or the stream",
    )
    WRONG_DIRECTION = (
        "wrong_direction",
        422,
        False,
        "the offer cannot send (WHIP) or receive (WHEP)",
    )
    ICE_RESTART_UNSUPPORTED = (
        "ice_restart_unsupported",
        422,
        False,
        "the PATCH asks for an ICE restart",
    )
    STREAM_FULL = "stream_full", 429, True, "the stream has as many viewers as it can take"

    # LL-HLS.
    INVALID_HLS_REQUEST = (
        "invalid_hls_request",
        400,
        False,
        "_HLS_msn/_HLS_part are not whole numbers, _HLS_part lacks _HLS_msn, "
        "or the segment is too far ahead",
    )
    HLS_NOT_FOUND = (
        "hls_not_found",
        404,
        False,
        "no node packages the stream, or the file is not (or no longer) there",
    )
    HLS_UNAVAILABLE = (
        "hls_unavailable",
        503,
        True,
        "no part yet, a blocking request's part did not come in time, or the node "
        "packaging the stream cannot be reached",
    )
    PLAYBACK_URL_INVALID = (
        "playback_url_invalid",
        403,
        False,
        "a signed playback URL this server did not make for this stream (forged or altered)",
    )
    PLAYBACK_URL_EXPIRED = (
        "playback_url_expired",
        403,
        False,
        "a signed playback URL past its expiry: ask GET /api/streams/{id}/playback for a new one",
    )

    # Replays.
    REPLAY_NOT_FOUND = (
        "replay_not_found",
        404,
        False,
        "the stream has no replay (not recorded, not ended yet, deleted or expired), "
        "or the replay has no such file",
    )
    CLIP_NOT_FOUND = (
        "clip_not_found",
        404,
        False,
        "no such product clip, or its replay was deleted or expired",
    )
    INVALID_TRIM = (
        "invalid_trim",
        422,
        False,
        "a clip's start and end must stay within its pinned span, at least 0.5 s apart",
    )
    RECEIPT_NOT_FOUND = (
        "receipt_not_found",
        404,
        False,
        "no video receipt for this order: no moment recorded, or its stream's replay does "
        "not exist (yet, or any more)",
    )

    # Live events and chat.
    UNSUPPORTED_SUBPROTOCOL = (
        "unsupported_subprotocol",
        400,
        False,
        "none of the WebSocket subprotocols asked for is supported",
    )
    UNKNOWN_TYPE = "unknown_type", 400, False, "a frame of a type the server does not take"
    ALREADY_AUTHENTICATED = (
        "already_authenticated",
        400,
        False,
        "an auth frame on a connection that has an identity",
    )
    BANNED = "banned", 403, False, "you are banned from this chat"
    TIMED_OUT = "timed_out", 403, True, "you are timed out in this chat (retry_after_ms)"
    MESSAGE_NOT_FOUND = "message_not_found", 404, False, "no chat message at this offset"
    BAN_NOT_FOUND = "ban_not_found", 404, False, "this user is not banned"
    EMPTY = "empty", 422, False, "the message is empty"
    TOO_LONG = "too_long", 422, False, "the message is over the length limit"
    LINKS_NOT_ALLOWED = "links_not_allowed", 422, False, "only hosts may post links"
    WORD_FILTERED = "word_filtered", 422, False, "the message contains a banned word"
    SLOW_MODE = "slow_mode", 429, True, "slow mode: wait retry_after_ms before the next message"
    RATE_LIMITED = "rate_limited", 429, True, "too many messages; wait retry_after_ms"

    # Inventory: catalog, grants, stock, holds, deals. The meaning is the message's text.
    NOT_PRODUCT_OWNER = (
        "not_product_owner",
        403,
        False,
        "only the product's owner (or an admin) may change it",
    )
    PRODUCT_NOT_GRANTED = (
        "product_not_granted",
        403,
        False,
        "this stream may not sell this product: its owner has not allowed it",
    )
    DEALS_NOT_GRANTED = (
        "deals_not_granted",
        403,
        False,
        "this stream may not run flash deals on this product: its owner has not allowed it",
    )
    UNKNOWN_SKU = "unknown_sku", 404, False, "no product with this SKU"
    UNKNOWN_HOLD = "unknown_hold", 404, False, "no hold with this id for this SKU"
    UNKNOWN_DEAL = "unknown_deal", 404, False, "no such deal"
    UNKNOWN_GRANT = "unknown_grant", 404, False, "no such grant on this product"
    SOLD_OUT = "sold_out", 409, False, "sold out"
    INSUFFICIENT_STOCK = (
        "insufficient_stock",
        409,
        False,
        "not enough stock left for this quantity",
    )
    OVER_LIMIT = (
        "over_limit",
        409,
        False,
        "this would take the buyer over the per-buyer limit",
    )
    DEAL_NOT_STARTED = "deal_not_started", 409, True, "the deal has not started yet"
    DEAL_ENDED = "deal_ended", 409, False, "the deal has ended"
    DEAL_EXISTS = "deal_exists", 409, False, "a deal with this id exists"
    HOLD_EXPIRED = "hold_expired", 409, False, "the hold has expired"
    HOLD_CONFLICT = (
        "hold_conflict",
        409,
        False,
        "this hold id was already used for a different reservation",
    )
    NOT_HELD = "not_held", 409, False, "the hold is no longer held"
    NOT_PREPARED = "not_prepared", 409, False, "the hold was not prepared by this commit"
    BELOW_COMMITTED = (
        "below_committed",
        409,
        False,
        "stock cannot go below what is held, sold or in live deals",
    )
    TOO_MANY_GRANTS = (
        "too_many_grants",
        409,
        False,
        "this product has as many grants as it may have",
    )
    COMMIT_FAILED = (
        "commit_failed",
        409,
        False,
        "the holds could not all be committed, so none was (failed lists why)",
    )
    ABORTED = (
        "aborted",
        409,
        False,
        "in commit_failed's failed: the commit was decided against by a recovery pass",
    )
    INVALID_QUANTITY = "invalid_quantity", 422, False, "the quantity is out of range"
    CURRENCY_MISMATCH = (
        "currency_mismatch",
        422,
        False,
        "the price's currency differs from the product's",
    )
    DEAL_NOT_IN_STREAM = "deal_not_in_stream", 422, False, "the deal runs on another stream"
    MALFORMED_CSV = (
        "malformed_csv",
        400,
        False,
        "the CSV is not UTF-8, does not parse, or its header lacks, repeats or adds columns",
    )
    EMPTY_IMPORT = "empty_import", 422, False, "the import has no rows"

    # Selling formats: auctions. The meaning is the message's text.
    UNKNOWN_AUCTION = "unknown_auction", 404, False, "no such auction"
    AUCTION_RUNNING = (
        "auction_running",
        409,
        True,
        "an auction is running on this stream; start the next once it ends",
    )
    AUCTION_EXISTS = "auction_exists", 409, False, "an auction with this id exists"
    AUCTION_ENDED = "auction_ended", 409, False, "the auction has ended"
    AUCTION_HAS_BIDS = (
        "auction_has_bids",
        409,
        False,
        "the auction has bids: it runs to its end and cannot be cancelled",
    )
    BID_TOO_LOW = (
        "bid_too_low",
        409,
        False,
        "the bid is below the lowest accepted now (next_bid), or not above your own maximum",
    )
    OWN_AUCTION = (
        "own_auction",
        403,
        False,
        "the stream's seller and hosts may not bid on its auctions",
    )
    INVALID_INCREMENTS = (
        "invalid_increments",
        422,
        False,
        "the increment table's bounds must rise strictly and only its last step be open",
    )

    # Selling formats: polls and giveaways.
    UNKNOWN_POLL = "unknown_poll", 404, False, "no such poll"
    POLL_RUNNING = (
        "poll_running",
        409,
        True,
        "a poll is running on this stream; start the next once it closes",
    )
    POLL_CLOSED = "poll_closed", 409, False, "the poll has closed"
    INVALID_OPTION = "invalid_option", 422, False, "the poll has no such option"
    UNKNOWN_GIVEAWAY = "unknown_giveaway", 404, False, "no such giveaway"
    GIVEAWAY_RUNNING = (
        "giveaway_running",
        409,
        True,
        "a giveaway is running on this stream; start the next once it is drawn",
    )
    GIVEAWAY_EXISTS = "giveaway_exists", 409, False, "a giveaway with this id exists"
    GIVEAWAY_ENDED = "giveaway_ended", 409, False, "the giveaway was drawn or cancelled"
    OWN_GIVEAWAY = (
        "own_giveaway",
        403,
        False,
        "the stream's seller and hosts may not enter its giveaways",
    )
    NOT_ELIGIBLE = (
        "not_eligible",
        403,
        False,
        "the giveaway is for the seller's followers or the stream's buyers only",
    )

    # Selling formats: group buys.
    UNKNOWN_GROUPBUY = "unknown_groupbuy", 404, False, "no such group buy"
    GROUPBUY_RUNNING = (
        "groupbuy_running",
        409,
        True,
        "a group buy is running on this stream; start the next once it ends",
    )
    GROUPBUY_EXISTS = "groupbuy_exists", 409, False, "a group buy with this id exists"
    GROUPBUY_ENDED = "groupbuy_ended", 409, False, "the group buy has ended"
    GROUPBUY_FULL = "groupbuy_full", 409, False, "the group buy has all the buyers it takes"
    ALREADY_JOINED = "already_joined", 409, False, "you are in this group buy already"
    NOT_JOINED = "not_joined", 409, False, "you are not in this group buy"
    OWN_GROUPBUY = (
        "own_groupbuy",
        403,
        False,
        "the stream's seller and hosts may not join its group buys",
    )
    INVALID_TIERS = (
        "invalid_tiers",
        422,
        False,
        "the price tiers' thresholds must rise and their prices fall, in one currency, "
        "within the cap",
    )

    # Selling formats: price knock-downs.
    UNKNOWN_KNOCKDOWN = "unknown_knockdown", 404, False, "no such knock-down"
    KNOCKDOWN_RUNNING = (
        "knockdown_running",
        409,
        True,
        "a knock-down is running on this stream; start the next once it ends",
    )
    KNOCKDOWN_EXISTS = "knockdown_exists", 409, False, "a knock-down with this id exists"
    KNOCKDOWN_ENDED = "knockdown_ended", 409, False, "the knock-down has ended"
    PRICE_SOLD_OUT = (
        "price_sold_out",
        409,
        True,
        "this price's units are gone; the next lower price has its own",
    )
    OWN_KNOCKDOWN = (
        "own_knockdown",
        403,
        False,
        "the stream's seller and hosts may not buy in or tap its knock-downs",
    )
    INVALID_KNOCKDOWN = (
        "invalid_knockdown",
        422,
        False,
        "the knock-down's floor must be below its start price, in steps, and its "
        "quantities and clock set",
    )

    # Cart, checkout, orders.
    MISSING_IDEMPOTENCY_KEY = (
        "missing_idempotency_key",
        400,
        False,
        "checkout needs an Idempotency-Key header",
    )
    INVALID_IDEMPOTENCY_KEY = (
        "invalid_idempotency_key",
        400,
        False,
        "the Idempotency-Key is not 1-255 printable ASCII characters",
    )
    PAYMENT_DECLINED = "payment_declined", 402, False, "the payment was declined"
    NOT_IN_CART = "not_in_cart", 404, False, "no such hold in your cart"
    ORDER_NOT_FOUND = "order_not_found", 404, False, "no such order of yours"
    CART_FULL = "cart_full", 409, False, "the cart holds as many lines as it may"
    HOLD_COMMITTED = "hold_committed", 409, False, "an item was already bought in another order"
    HOLD_IN_CHECKOUT = (
        "hold_in_checkout",
        409,
        True,
        "an item is being checked out by another checkout; retry once it has finished",
    )
    CHECKOUT_IN_PROGRESS = (
        "checkout_in_progress",
        409,
        True,
        "a checkout with this Idempotency-Key is still running",
    )
    EMPTY_CART = "empty_cart", 422, False, "the cart is empty"
    MIXED_CURRENCIES = (
        "mixed_currencies",
        422,
        False,
        "the cart mixes currencies; check out one at a time",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        422,
        False,
        "this Idempotency-Key was used with a different request",
    )


@unique
class CloseCode(IntEnum):
    """How a live-events socket ends (RFC 6455 7.4), and whether to come back.

    ``reconnect`` false means reconnecting as before cannot help (the client sent what
    the server refuses, or its token was refused): stop and say why.
    """

    reconnect: bool
    meaning: str

    def __new__(cls, code: int, reconnect: bool, meaning: str) -> CloseCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.reconnect = reconnect
        member.meaning = meaning
        return member

    NORMAL = 1000, False, "the socket was closed on purpose (the server echoes a client's close)"
    GOING_AWAY = 1001, True, "the server is shutting down"
    PROTOCOL_ERROR = 1002, False, "the client broke the WebSocket protocol"
    UNSUPPORTED_DATA = (
        1003,
        False,
        "a text frame on livecast.v1.msgpack or a binary one on livecast.v1.json",
    )
    ABNORMAL = (
        1006,
        True,
        "never sent: the connection dropped, or the upgrade was refused (ask the URL over "
        "HTTP to learn why: 401 and 404 are final)",
    )
    POLICY_VIOLATION = 1008, False, "a refused auth token, or too many invalid frames"
    MESSAGE_TOO_BIG = 1009, False, "a frame over chat.max_frame_bytes"
    INTERNAL_ERROR = 1011, True, "a server fault (logged); reconnect with backoff"
    SERVICE_RESTART = (
        1012,
        True,
        "live events were interrupted (Redis restarted or failed over): reconnect to recover",
    )
    TRY_AGAIN_LATER = (
        1013,
        True,
        "the viewer fell too far behind, or storage did not answer: reconnect to recover",
    )
