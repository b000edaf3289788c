-- Start a giveaway: take one unit out of the SKU's free stock (counted in deal_reserved,
-- beside flash deals and auctions, so the SKU's total stays exact) and open the
-- giveaway, in one step. The unit cannot be sold twice: it is the giveaway's until the
-- draw makes it the winner's, or it goes back (cancelled, or nobody entered).
-- KEYS[1] the SKU's key base; ARGV: giveaway_id, stream_id, seller_id, eligibility,
-- seed (hex, secret until the draw), seed_sha256, duration_ms (0: the host draws)
-- Returns {status, starts_ms, ends_ms}
local base = KEYS[1]
local product = base .. ':product'
local giveaway = base .. ':giveaway:' .. ARGV[1]
local p = redis.call('HMGET', product, 'available', 'currency', 'title')
if not p[2] then return {'unknown_sku', 0, 0} end
if redis.call('EXISTS', giveaway) == 1 then return {'giveaway_exists', 0, 0} end
if tonumber(p[1]) < 1 then return {'sold_out', 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = 0
if tonumber(ARGV[7]) > 0 then ends = now + tonumber(ARGV[7]) end
redis.call('HINCRBY', product, 'available', -1)
redis.call('HINCRBY', product, 'deal_reserved', 1)
redis.call('HSET', giveaway, 'state', 'running', 'stream', ARGV[2], 'seller', ARGV[3],
  'eligibility', ARGV[4], 'seed', ARGV[5], 'seed_sha256', ARGV[6], 'starts', now,
  'ends', ends, 'entries', 0, 'currency', p[2], 'title', p[3] or '')
return {'ok', now, ends}
