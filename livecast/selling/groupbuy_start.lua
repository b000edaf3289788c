-- Start a group buy on a product. No unit leaves stock yet: each join takes one from
-- free stock (groupbuy_join.lua), so the group never holds more than exist.
-- KEYS[1] the SKU's key base; ARGV: id, stream_id, seller_id, currency, tiers
-- ("min_buyers price_minor ..."), min_buyers, cap, duration_ms
-- Returns {status, starts_ms, ends_ms}
local base = KEYS[1]
local product = base .. ':product'
local group = base .. ':groupbuy:' .. ARGV[1]
local p = redis.call('HMGET', product, 'available', 'currency', 'title')
if not p[2] then return {'unknown_sku', 0, 0} end
if p[2] ~= ARGV[4] then return {'currency_mismatch', 0, 0} end
if redis.call('EXISTS', group) == 1 then return {'groupbuy_exists', 0, 0} end
if tonumber(p[1]) < 1 then return {'sold_out', 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = now + tonumber(ARGV[8])
redis.call('HSET', group, 'state', 'running', 'stream', ARGV[2], 'seller', ARGV[3],
  'currency', ARGV[4], 'tiers', ARGV[5], 'min_buyers', ARGV[6], 'cap', ARGV[7],
  'starts', now, 'ends', ends, 'members', 0, 'taken', 0, 'joins', 0, 'leaves', 0,
  'captured', 0, 'voided', 0, 'rev', 0, 'title', p[3] or '')
return {'ok', now, ends}
