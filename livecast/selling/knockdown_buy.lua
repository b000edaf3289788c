-- Buy one unit at the knock-down's current price: it becomes the buyer's cart hold at
-- that price (as a flash deal's add-to-cart does), expiring after pay_ms back to free
-- stock. Within the quantity, the price's own quantity (per_price) and the buyer's limit.
-- When the last unit goes (or the floor's quantity), the knock-down is sold out and what
-- is left of its carve returns to free stock, in the same step.
-- Idempotent by (user, key): a retried buy answers the same hold.
-- KEYS[1] the SKU's key base; ARGV: id, user, key, hold_id
-- Returns {status, hold_id, price, expires_ms, remaining, level_sold, sold_out (0/1),
--          rev, now_ms, replayed (0/1)}
-- status: held | unknown_knockdown | knockdown_ended | own_knockdown | sold_out |
--         price_sold_out | over_limit
local base = KEYS[1]
local product = base .. ':product'
local knock = base .. ':knockdown:' .. ARGV[1]
local user, key = ARGV[2], ARGV[3]
local seen = redis.call('HGET', knock .. ':keys', user .. ' ' .. key)
if seen then
  local reply = cjson.decode(seen)
  reply[10] = 1
  return reply
end
local k = redis.call('HMGET', knock, 'state', 'ends', 'seller', 'price', 'floor',
  'remaining', 'per_price', 'level_sold', 'per_buyer', 'pay_ms', 'currency', 'title', 'rev')
if not k[1] then return {'unknown_knockdown'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if k[1] ~= 'running' or now >= tonumber(k[2]) then return {'knockdown_ended'} end
if user == k[3] then return {'own_knockdown'} end
local remaining, per_price, level_sold = tonumber(k[6]), tonumber(k[7]), tonumber(k[8])
if remaining < 1 then return {'sold_out'} end
if per_price > 0 and level_sold >= per_price then return {'price_sold_out'} end
local buyers = knock .. ':buyers'
local mine = tonumber(redis.call('HGET', buyers, user) or '0')
if mine >= tonumber(k[9]) then return {'over_limit'} end
local hold_id = ARGV[4]
local expires = now + tonumber(k[10])
local price = tonumber(k[4])
redis.call('HSET', base .. ':hold:' .. hold_id, 'state', 'held', 'qty', 1, 'user', user,
  'deal', '', 'created', now, 'expires', expires, 'price_minor', price, 'currency', k[11],
  'txn', '', 'title', k[12])
redis.call('ZADD', base .. ':live', expires, hold_id)
redis.call('HINCRBY', base .. ':users', user, 1)
redis.call('HINCRBY', buyers, user, 1)
redis.call('HINCRBY', product, 'held', 1)
redis.call('HINCRBY', product, 'deal_reserved', -1)
remaining = remaining - 1
level_sold = level_sold + 1
local rev = tonumber(k[13]) + 1
redis.call('HSET', knock, 'remaining', remaining, 'level_sold', level_sold, 'rev', rev)
redis.call('HINCRBY', knock, 'sold', 1)
redis.call('HINCRBY', knock, 'gmv', price)
local sold_out = 0
if remaining == 0 or (price <= tonumber(k[5]) and per_price > 0 and level_sold >= per_price) then
  sold_out = 1
  if remaining > 0 then
    redis.call('HINCRBY', product, 'available', remaining)
    redis.call('HINCRBY', product, 'deal_reserved', -remaining)
  end
  redis.call('HSET', knock, 'state', 'sold_out', 'remaining', 0, 'ended', now)
end
local reply = {'held', hold_id, price, expires, remaining, level_sold, sold_out, rev, now, 0}
redis.call('HSET', knock .. ':keys', user .. ' ' .. key, cjson.encode(reply))
return reply
