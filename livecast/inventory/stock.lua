-- Adjust a product's stock by a delta or to an absolute total, never below what is held,
-- sold or carved into live deals. Only the product's owner, or an admin (editor ''), may.
-- KEYS[1] the SKU's key base; ARGV: 'delta' | 'set', n, editor
-- Returns {status ('ok' | 'unknown_sku' | 'below_committed' | 'not_owner'), available, held,
-- sold, deal_reserved}
local base = KEYS[1]
local product = base .. ':product'
local c = redis.call('HMGET', product, 'available', 'held', 'sold', 'deal_reserved', 'owner')
if not c[1] then return {'unknown_sku', 0, 0, 0, 0} end
if ARGV[3] ~= '' and c[5] ~= ARGV[3] then return {'not_owner', 0, 0, 0, 0} end
local available, held = tonumber(c[1]), tonumber(c[2])
local sold, carved = tonumber(c[3]), tonumber(c[4])
local n = tonumber(ARGV[2])
local target
if ARGV[1] == 'set' then target = n - held - sold - carved else target = available + n end
if target < 0 then return {'below_committed', available, held, sold, carved} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', product, 'available', target, 'updated', now)
return {'ok', target, held, sold, carved}
