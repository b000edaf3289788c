-- End a flash deal (early, or at its end time): its unsold, unheld units go back to the
-- SKU's free stock; holds made under it keep their deal price until they finish, and
-- return to free stock if released or expired. Idempotent: only the call that ends it
-- gets 'ok', so exactly one node announces the end. An ended (or unknown) deal leaves
-- the SKU's deal schedule ({sku}:deals).
-- KEYS[1] the SKU's key base; ARGV: deal_id, reason, only_if_due ('1': end only if its
-- end time has passed)
-- Returns {status ('ok' | 'unknown_deal' | 'already_ended' | 'not_due'), returned, sold, held}
local base = KEYS[1]
local product = base .. ':product'
local deal = base .. ':deal:' .. ARGV[1]
local d = redis.call('HMGET', deal, 'state', 'remaining', 'sold', 'held', 'ends')
local schedule = base .. ':deals'
if not d[1] then
  redis.call('ZREM', schedule, ARGV[1])
  return {'unknown_deal', 0, 0, 0}
end
if d[1] ~= 'active' then
  redis.call('ZREM', schedule, ARGV[1])
  return {'already_ended', 0, tonumber(d[3]), tonumber(d[4])}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '1' and now < tonumber(d[5]) then return {'not_due', 0, 0, 0} end
local remaining = tonumber(d[2])
redis.call('HINCRBY', product, 'available', remaining)
redis.call('HINCRBY', product, 'deal_reserved', -remaining)
redis.call('HSET', deal, 'state', 'ended', 'remaining', 0, 'ended', now, 'end_reason', ARGV[2])
redis.call('ZREM', schedule, ARGV[1])
return {'ok', remaining, tonumber(d[3]), tonumber(d[4])}
