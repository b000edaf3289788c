-- Create or replace a product's catalog fields; optionally set its total stock, never
-- below what is held, sold or carved into live deals. All or nothing.
-- KEYS[1] the SKU's key base; ARGV: title, description, image_url, price_minor, currency,
-- stock ('' to leave the stock as it is; a new product then starts at 0)
-- Returns {status ('created' | 'updated' | 'below_committed'), committed}
local base = KEYS[1]
local product = base .. ':product'
local c = redis.call('HMGET', product, 'currency', 'held', 'sold', 'deal_reserved')
local exists = c[1] ~= false
local committed = 0
if exists then committed = tonumber(c[2]) + tonumber(c[3]) + tonumber(c[4]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] ~= '' and tonumber(ARGV[6]) < committed then
  return {'below_committed', committed}
end
redis.call('HSET', product, 'title', ARGV[1], 'description', ARGV[2], 'image_url', ARGV[3],
  'price_minor', ARGV[4], 'currency', ARGV[5], 'updated', now)
if not exists then
  redis.call('HSET', product, 'available', 0, 'held', 0, 'sold', 0, 'deal_reserved', 0, 'created', now)
end
if ARGV[6] ~= '' then
  redis.call('HSET', product, 'available', tonumber(ARGV[6]) - committed)
end
if exists then return {'updated', committed} end
return {'created', committed}
