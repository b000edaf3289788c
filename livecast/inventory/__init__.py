"""Inventory: catalog, who may sell what, atomic stock reservation (Lua), flash deals and
pinned products.

Other capabilities reach it through ``app[INVENTORY]`` (:class:`Inventory`): checkout uses
``.reservations`` (reserve, release, commit, commit_holds) and, before it sells a product
on a stream, ``.ownership.require_sellable(stream, product)``; the chat hub's hello
snapshot ``.current_pin(stream_id)`` and ``.active_deals(stream_id)``.
"""

from livecast.inventory.money import Money
from livecast.inventory.reserve import Hold, HoldRef, HoldState, Reservations
from livecast.inventory.service import INVENTORY, Inventory

__all__ = ["INVENTORY", "Hold", "HoldRef", "HoldState", "Inventory", "Money", "Reservations"]
