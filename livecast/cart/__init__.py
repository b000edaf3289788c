"""In-stream cart, checkout, orders, payments, order webhooks and per-stream sales stats."""

from livecast.cart.checkout import Checkout, CheckoutRequest
from livecast.cart.orders import Order, OrderLine, OrderStore
from livecast.cart.payments import PaymentDeclined, PaymentProvider, TestPaymentProvider
from livecast.cart.service import CART, CartService
from livecast.cart.stats import SalesStats, StreamStats
from livecast.cart.webhooks import WebhookDispatcher, signature_header, verify_signature

__all__ = [
    "CART",
    "CartService",
    "Checkout",
    "CheckoutRequest",
    "Order",
    "OrderLine",
    "OrderStore",
    "PaymentDeclined",
    "PaymentProvider",
    "SalesStats",
    "StreamStats",
    "TestPaymentProvider",
    "WebhookDispatcher",
    "signature_header",
    "verify_signature",
]
