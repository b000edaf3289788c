-- Give or take back a right to sell a product, checked against its owner atomically.
-- A grant is stored as '<deals 0|1> <granted at, ms> <granted by>' in {sku}:grants under
-- its grantee.
-- KEYS[1] the SKU's key base; ARGV: editor (the caller's subject, '' for an admin),
-- grantee ('seller:<sub>' | 'stream:<id>'), deals ('0' | '1', or '' to revoke),
-- max grants per product, granted by (the caller's subject)
-- Returns {status ('created' | 'updated' | 'revoked' | 'unknown_sku' | 'not_owner' |
-- 'unknown_grant' | 'too_many_grants'), the grant as stored now or, revoked, as it was}
local base = KEYS[1]
local grants = base .. ':grants'
local p = redis.call('HMGET', base .. ':product', 'currency', 'owner')
if not p[1] then return {'unknown_sku', ''} end
local editor = ARGV[1]
if editor ~= '' and p[2] ~= editor then return {'not_owner', ''} end
local before = redis.call('HGET', grants, ARGV[2])
if ARGV[3] == '' then
  if not before then return {'unknown_grant', ''} end
  redis.call('HDEL', grants, ARGV[2])
  return {'revoked', before}
end
if not before and redis.call('HLEN', grants) >= tonumber(ARGV[4]) then
  return {'too_many_grants', ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local value = ARGV[3] .. ' ' .. now .. ' ' .. ARGV[5]
redis.call('HSET', grants, ARGV[2], value)
if before then return {'updated', value} end
return {'created', value}
