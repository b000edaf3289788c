"""Selling formats beside flash deals: auctions (:mod:`livecast.selling.auctions`), polls
(:mod:`livecast.selling.polls`), giveaways (:mod:`livecast.selling.giveaways`), group
buys (:mod:`livecast.selling.groupbuys`) and price knock-downs
(:mod:`livecast.selling.knockdowns`).

Other capabilities reach them through ``app[SELLING]`` (:class:`Selling`),
``app[GROUPBUYS]`` and ``app[KNOCKDOWNS]``.
"""

from livecast.selling.auction_types import Auction, AuctionState
from livecast.selling.auctions import Auctions
from livecast.selling.giveaway_types import Giveaway, GiveawayState
from livecast.selling.giveaways import Giveaways
from livecast.selling.groupbuy_service import GROUPBUYS
from livecast.selling.groupbuy_types import GroupBuy, GroupBuyState
from livecast.selling.groupbuys import GroupBuys
from livecast.selling.knockdown_service import KNOCKDOWNS
from livecast.selling.knockdown_types import Knockdown, KnockdownState
from livecast.selling.knockdowns import Knockdowns
from livecast.selling.poll_types import Poll, PollState
from livecast.selling.polls import Polls
from livecast.selling.service import SELLING, Selling

__all__ = [
    "GROUPBUYS",
    "KNOCKDOWNS",
    "SELLING",
    "Auction",
    "AuctionState",
    "Auctions",
    "Giveaway",
    "GiveawayState",
    "Giveaways",
    "GroupBuy",
    "GroupBuyState",
    "GroupBuys",
    "Knockdown",
    "KnockdownState",
    "Knockdowns",
    "Poll",
    "PollState",
    "Polls",
    "Selling",
]
