"""Selling formats beside flash deals: auctions (:mod:`livecast.selling.auctions`).

Other capabilities reach them through ``app[SELLING]`` (:class:`Selling`).
"""

from livecast.selling.auctions import Auction, Auctions, AuctionState
from livecast.selling.service import SELLING, Selling

__all__ = ["SELLING", "Auction", "AuctionState", "Auctions", "Selling"]
