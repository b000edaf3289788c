-- Place a bid: every bid is the buyer's maximum, and the auction bids for them only as
-- much as it takes to lead (proxy bidding). Scripts run one at a time, so the order of
-- bids is the server's alone; on equal maximums the earlier one leads.
-- A bid that moves the price is logged ({auction}:log) and, in the last soft_ms of a
-- soft-close auction, moves the end time later by exactly soft_ms.
-- Idempotent by (user, key): a retried bid returns the first answer and bids nothing.
-- KEYS[1] the SKU's key base; ARGV: auction_id, user, display name, amount_minor,
-- currency, idempotency key
-- Returns {status, price, leader, leader_name, ends_ms, bids, bidders, now_ms,
--          extended_ms, your_max, replayed (0/1)}
-- status: accepted (you lead) | outbid (the leader's maximum beat yours; the price
--         moved) | max_raised (you led; your maximum is higher now) | unknown_auction |
--         auction_ended | own_auction | currency_mismatch | bid_too_low
local base = KEYS[1]
local auction = base .. ':auction:' .. ARGV[1]
local user, name, amount, key = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[6]
local keys = auction .. ':keys'
local seen = redis.call('HGET', keys, user .. ' ' .. key)
if seen then
  local reply = cjson.decode(seen)
  reply[11] = 1
  return reply
end
local a = redis.call('HMGET', auction, 'state', 'seller', 'currency', 'ends', 'soft_ms',
  'steps', 'start_minor', 'price', 'leader', 'leader_name', 'leader_max', 'bids', 'bidders')
if not a[1] then return {'unknown_auction'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(a[4])
if a[1] ~= 'running' or now >= ends then return {'auction_ended'} end
if user == a[2] then return {'own_auction'} end
if ARGV[5] ~= a[3] then return {'currency_mismatch'} end

local function step(price)
  local below, last = nil, 1
  for b, s in string.gmatch(a[6], '(%d+) (%d+)') do
    b, s = tonumber(b), tonumber(s)
    last = s
    if b == 0 or price < b then return s end
  end
  return last
end

local price, leader, leader_name = tonumber(a[8]), a[9], a[10]
local leader_max, bids, bidders = tonumber(a[11]), tonumber(a[12]), tonumber(a[13])
local status
local minimum = tonumber(a[7])
if leader ~= '' then minimum = price + step(price) end
if leader == user then
  if amount <= leader_max then return {'bid_too_low', price, leader, leader_name, ends,
    bids, bidders, now, 0, leader_max, 0} end
  leader_max = amount
  status = 'max_raised'
elseif amount < minimum then
  return {'bid_too_low', price, leader, leader_name, ends, bids, bidders, now, 0, amount, 0}
elseif leader == '' then
  price, leader, leader_name, leader_max = minimum, user, name, amount
  status = 'accepted'
elseif amount > leader_max then
  -- The challenger leads, at one step over the old maximum (or their own, if lower).
  price = math.max(minimum, math.min(amount, leader_max + step(leader_max)))
  leader, leader_name, leader_max = user, name, amount
  status = 'accepted'
else
  -- The leader's maximum covers it: the price rises to one step over the bid.
  price = math.max(minimum, math.min(leader_max, amount + step(amount)))
  status = 'outbid'
end
local extended = 0
if redis.call('HSETNX', auction .. ':bidder', user, 1) == 1 then bidders = bidders + 1 end
if status ~= 'max_raised' then
  bids = bids + 1
  local soft = tonumber(a[5])
  if soft > 0 and ends - now <= soft then
    ends = ends + soft
    extended = soft
    redis.call('HINCRBY', auction, 'extensions', 1)
  end
  redis.call('RPUSH', auction .. ':log', price .. ' ' .. leader .. ' ' .. now .. ' ' .. ends
    .. ' ' .. extended)
end
redis.call('HSET', auction, 'price', price, 'leader', leader, 'leader_name', leader_name,
  'leader_max', leader_max, 'bids', bids, 'bidders', bidders, 'ends', ends)
local reply = {status, price, leader, leader_name, ends, bids, bidders, now, extended, amount, 0}
redis.call('HSET', keys, user .. ' ' .. key, cjson.encode(reply))
return reply
