"""Selling formats beside flash deals: auctions (:mod:`livecast.selling.auctions`), polls
(:mod:`livecast.selling.polls`) and giveaways (:mod:`livecast.selling.giveaways`).

Other capabilities reach them through ``app[SELLING]`` (:class:`Selling`).
"""

from livecast.selling.auction_types import Auction, AuctionState
from livecast.selling.auctions import Auctions
from livecast.selling.giveaway_types import Giveaway, GiveawayState
from livecast.selling.giveaways import Giveaways
from livecast.selling.poll_types import Poll, PollState
from livecast.selling.polls import Polls
from livecast.selling.service import SELLING, Selling

__all__ = [
    "SELLING",
    "Auction",
    "AuctionState",
    "Auctions",
    "Giveaway",
    "GiveawayState",
    "Giveaways",
    "Poll",
    "PollState",
    "Polls",
    "Selling",
]
