-- Start an auction: take one unit out of the SKU's free stock (counted in deal_reserved,
-- beside flash deals' carves, so the SKU's total stays exact) and open the auction, in
-- one step. The unit cannot be sold twice: it is the auction's until it ends.
-- KEYS[1] the SKU's key base; ARGV: auction_id, stream_id, seller_id, start_minor,
-- currency, duration_ms, soft_close_ms (0: sudden death), increments ("below step ...",
-- below 0 on the last step: no bound), pay_within_ms
-- Returns {status, starts_ms, ends_ms}
local base = KEYS[1]
local product = base .. ':product'
local auction = base .. ':auction:' .. ARGV[1]
local p = redis.call('HMGET', product, 'available', 'currency', 'title')
if not p[2] then return {'unknown_sku', 0, 0} end
if p[2] ~= ARGV[5] then return {'currency_mismatch', 0, 0} end
if redis.call('EXISTS', auction) == 1 then return {'auction_exists', 0, 0} end
if tonumber(p[1]) < 1 then return {'sold_out', 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[6])
redis.call('HINCRBY', product, 'available', -1)
redis.call('HINCRBY', product, 'deal_reserved', 1)
redis.call('HSET', auction, 'state', 'running', 'stream', ARGV[2], 'seller', ARGV[3],
  'start_minor', ARGV[4], 'currency', ARGV[5], 'starts', now, 'ends', ends,
  'soft_ms', ARGV[7], 'steps', ARGV[8], 'pay_ms', ARGV[9], 'price', 0, 'leader', '',
  'leader_name', '', 'leader_max', 0, 'bids', 0, 'bidders', 0, 'extensions', 0,
  'title', p[3] or '')
return {'ok', now, ends}
