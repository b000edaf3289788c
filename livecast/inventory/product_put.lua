-- Create or replace a product's catalog fields; optionally set its total stock, never
-- below what is held, sold or carved into live deals. All or nothing.
-- Only the product's owner may replace it; an editor of '' (an admin) may replace any
-- product and give it an owner. A product without an owner (made before products had
-- owners, or by an admin for nobody) is an admin's to change.
-- KEYS[1] the SKU's key base; ARGV: title, description, image_url, price_minor, currency,
-- stock ('' to leave the stock as it is; a new product then starts at 0),
-- editor (the caller's subject, '' for an admin), owner ('' to keep it; a new product
-- then has none)
-- Returns {status ('created' | 'updated' | 'below_committed' | 'not_owner'), committed,
-- owner before ('' for none)}
local base = KEYS[1]
local product = base .. ':product'
local c = redis.call('HMGET', product, 'currency', 'held', 'sold', 'deal_reserved', 'owner')
local exists = c[1] ~= false
local owner_before = c[5] or ''
local editor, owner = ARGV[7], ARGV[8]
if exists and editor ~= '' and owner_before ~= editor then
  return {'not_owner', 0, owner_before}
end
local committed = 0
if exists then committed = tonumber(c[2]) + tonumber(c[3]) + tonumber(c[4]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] ~= '' and tonumber(ARGV[6]) < committed then
  return {'below_committed', committed, owner_before}
end
redis.call('HSET', product, 'title', ARGV[1], 'description', ARGV[2], 'image_url', ARGV[3],
  'price_minor', ARGV[4], 'currency', ARGV[5], 'updated', now)
if owner ~= '' then redis.call('HSET', product, 'owner', owner) end
if not exists then
  redis.call('HSET', product, 'available', 0, 'held', 0, 'sold', 0, 'deal_reserved', 0, 'created', now)
end
if ARGV[6] ~= '' then
  redis.call('HSET', product, 'available', tonumber(ARGV[6]) - committed)
end
if exists then return {'updated', committed, owner_before} end
return {'created', committed, owner_before}
