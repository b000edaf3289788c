-- Settle one member of a closed group buy (or one who left), after the payment
-- provider did: 'captured' (the unit is sold to them, order order_id) or 'voided' (the
-- unit goes back to free stock). Idempotent: a member settled before answers 'same'.
-- KEYS[1] the SKU's key base; ARGV: id, user, payment_id, target (captured | voided)
-- Returns {status, taken_after}
-- status: settled | same | illegal (the member cannot reach target) | not_joined
local base = KEYS[1]
local product = base .. ':product'
local group = base .. ':groupbuy:' .. ARGV[1]
local members = group .. ':members'
local m = redis.call('HGET', members, ARGV[2])
if not m then return {'not_joined', 0} end
local member = cjson.decode(m)
if member.p ~= ARGV[3] then return {'not_joined', 0} end
local target = ARGV[4]
if member.s == target then return {'same', 0} end
if member.s == 'captured' or member.s == 'voided' then return {'illegal', 0} end
if target == 'captured' and member.s ~= 'authorized' then return {'illegal', 0} end
redis.call('HINCRBY', product, 'deal_reserved', -1)
if target == 'captured' then
  redis.call('HINCRBY', product, 'sold', 1)
  redis.call('HINCRBY', group, 'captured', 1)
else
  redis.call('HINCRBY', product, 'available', 1)
  redis.call('HINCRBY', group, 'voided', 1)
end
member.s = target
redis.call('HSET', members, ARGV[2], cjson.encode(member))
local taken = redis.call('HINCRBY', group, 'taken', -1)
return {'settled', taken}
