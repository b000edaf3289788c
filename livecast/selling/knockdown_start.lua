-- Start a price knock-down: carve its quantity out of the SKU's free stock (counted in
-- deal_reserved, as flash deals do, so the SKU's total stays exact and no unit is sold
-- twice) and open it at its start price.
-- KEYS[1] the SKU's key base; ARGV: id, stream_id, seller_id, currency, start_minor,
-- step_minor, floor_minor, mode ('taps' | 'time'), every (taps per step, or ms per
-- step), quantity, per_price (0: no limit per price), per_buyer, duration_ms, pay_ms
-- Returns {status, starts_ms, ends_ms, next_step_ms (time mode; else 0), available}
local base = KEYS[1]
local product = base .. ':product'
local knock = base .. ':knockdown:' .. ARGV[1]
local p = redis.call('HMGET', product, 'available', 'currency', 'title')
if not p[2] then return {'unknown_sku', 0, 0, 0, 0} end
if p[2] ~= ARGV[4] then return {'currency_mismatch', 0, 0, 0, 0} end
if redis.call('EXISTS', knock) == 1 then return {'knockdown_exists', 0, 0, 0, 0} end
local quantity, available = tonumber(ARGV[10]), tonumber(p[1])
if available < quantity then return {'insufficient_stock', 0, 0, 0, available} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[13])
local next_step = 0
if ARGV[8] == 'time' then next_step = now + tonumber(ARGV[9]) end
redis.call('HINCRBY', product, 'available', -quantity)
redis.call('HINCRBY', product, 'deal_reserved', quantity)
redis.call('HSET', knock, 'state', 'running', 'stream', ARGV[2], 'seller', ARGV[3],
  'currency', ARGV[4], 'start', ARGV[5], 'step', ARGV[6], 'floor', ARGV[7], 'mode', ARGV[8],
  'every', ARGV[9], 'quantity', quantity, 'remaining', quantity, 'per_price', ARGV[11],
  'per_buyer', ARGV[12], 'pay_ms', ARGV[14], 'price', ARGV[5], 'level', 0, 'level_sold', 0,
  'taps', 0, 'level_taps', 0, 'steps', 0, 'sold', 0, 'gmv', 0, 'starts', now, 'ends', ends,
  'next_step', next_step, 'rev', 0, 'title', p[3] or '')
return {'ok', now, ends, next_step, available - quantity}
