-- End a flash deal (early, or at its end time): its unsold, unheld units go back to the
-- SKU's free stock; holds made under it keep their deal price until they finish, and
-- return to free stock if released or expired. Idempotent: only the call that ends it
-- gets 'ok', so exactly one node announces the end. An ended (or unknown) deal leaves
-- the SKU's deal schedule ({sku}:deals).
-- KEYS[1] the SKU's key base; ARGV: deal_id, reason, only_if_due ('1': end only if its
-- end time has passed). A deal ended after its end time records the reason 'time'.
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
local ends = tonumber(d[5])
if ARGV[3] == '1' and now < ends then return {'not_due', 0, 0, 0} end
-- Past its end time the deal was already over for buyers: it ended by time, whoever
-- (host, stream end) gets here before the sweeper.
local reason = ARGV[2]
if now >= ends then reason = 'time' end
local remaining = tonumber(d[2])
-- A sold-out deal has nothing to give back; and Lua's -0 would reach Redis as '-0',
-- which HINCRBY refuses as not an integer.
if remaining > 0 then
  redis.call('HINCRBY', product, 'available', remaining)
  redis.call('HINCRBY', product, 'deal_reserved', -remaining)
end
redis.call('HSET', deal, 'state', 'ended', 'remaining', 0, 'ended', now, 'end_reason', reason)
redis.call('ZREM', schedule, ARGV[1])
return {'ok', remaining, tonumber(d[3]), tonumber(d[4])}
