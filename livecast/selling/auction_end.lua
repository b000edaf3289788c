-- End an auction whose time is up, or now when ARGV[3] is '1' (its stream ended: the
-- leader wins at the price reached). With a leader, the unit becomes the winner's hold at
-- the winning price, with its own deadline (pay_ms), in this same step: it is held, not
-- sold, and returns to free stock if the winner does not check out in time (the
-- inventory sweeper expires it like any hold). With no bid, the unit goes back to free
-- stock. Only the call that ends it gets 'sold' or 'unsold'.
-- The bid keys' answers are kept keys_ttl_s after the end (a retried bid within it is answered
-- as the first time); the auction, its bid log and its bidders stay (stats, audit).
-- KEYS[1] the SKU's key base; ARGV: auction_id, hold_id, early ('1' or '0'), keys_ttl_s
-- Returns {status, ends_ms, hold_expires_ms, now_ms}
-- status: sold | unsold | not_due (ends_ms: the end time now) | already_ended |
--         unknown_auction
local base = KEYS[1]
local product = base .. ':product'
local auction = base .. ':auction:' .. ARGV[1]
local a = redis.call('HMGET', auction, 'state', 'ends', 'leader', 'price', 'currency',
  'pay_ms', 'title')
if not a[1] then return {'unknown_auction', 0, 0, 0} end
if a[1] ~= 'running' then return {'already_ended', tonumber(a[2]), 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(a[2])
if now < ends and ARGV[3] ~= '1' then return {'not_due', ends, 0, now} end
redis.call('EXPIRE', auction .. ':keys', tonumber(ARGV[4]))
redis.call('HINCRBY', product, 'deal_reserved', -1)
if a[3] == '' then
  redis.call('HINCRBY', product, 'available', 1)
  redis.call('HSET', auction, 'state', 'unsold', 'ended', now)
  return {'unsold', ends, 0, now}
end
local hold_id = ARGV[2]
local expires = now + tonumber(a[6])
redis.call('HSET', base .. ':hold:' .. hold_id, 'state', 'held', 'qty', 1, 'user', a[3],
  'deal', '', 'created', now, 'expires', expires, 'price_minor', a[4], 'currency', a[5],
  'txn', '', 'title', a[7])
redis.call('ZADD', base .. ':live', expires, hold_id)
redis.call('HINCRBY', base .. ':users', a[3], 1)
redis.call('HINCRBY', product, 'held', 1)
redis.call('HSET', auction, 'state', 'sold', 'ended', now, 'hold', hold_id)
return {'sold', ends, expires, now}
