"""Selling formats beside flash deals: auctions (:mod:`livecast.selling.auctions`).

Other capabilities reach them through ``app[SELLING]`` (:class:`Selling`).
"""

from livecast.selling.auction_types import Auction, AuctionState
from livecast.selling.auctions import Auctions
from livecast.selling.service import SELLING, Selling

__all__ = ["SELLING", "Auction", "AuctionState", "Auctions", "Selling"]
