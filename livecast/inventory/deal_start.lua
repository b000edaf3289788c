-- Start a flash deal: carve its quantity out of the SKU's free stock and put the deal on
-- the SKU's own deal schedule ({sku}:deals, end time in ms), atomically. That schedule is
-- what the sweeper trusts to find a deal whose time is up: the indexes outside this hash
-- tag are written after this script, and a crash in between must not strand the stock.
-- KEYS[1] the SKU's key base; ARGV: deal_id, stream_id, quantity, price_minor, currency,
-- start_delay_ms, duration_ms, per_user_limit
-- Returns {status, starts_ms, ends_ms, available_after}
local base = KEYS[1]
local product = base .. ':product'
local deal = base .. ':deal:' .. ARGV[1]
local p = redis.call('HMGET', product, 'available', 'currency')
if not p[2] then return {'unknown_sku', 0, 0, 0} end
if p[2] ~= ARGV[5] then return {'currency_mismatch', 0, 0, 0} end
if redis.call('EXISTS', deal) == 1 then return {'deal_exists', 0, 0, 0} end
local quantity, available = tonumber(ARGV[3]), tonumber(p[1])
if available < quantity then return {'insufficient_stock', 0, 0, available} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local starts = now + tonumber(ARGV[6])
local ends = starts + tonumber(ARGV[7])
redis.call('HINCRBY', product, 'available', -quantity)
redis.call('HINCRBY', product, 'deal_reserved', quantity)
redis.call('HSET', deal, 'state', 'active', 'stream', ARGV[2], 'quantity', quantity,
  'remaining', quantity, 'held', 0, 'sold', 0, 'price_minor', ARGV[4], 'currency', ARGV[5],
  'starts', starts, 'ends', ends, 'per_user', ARGV[8], 'created', now)
redis.call('ZADD', base .. ':deals', ends, ARGV[1])
return {'ok', starts, ends, available - quantity}
