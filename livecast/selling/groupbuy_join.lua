-- A buyer joins a running group buy: one unit leaves free stock (counted in
-- deal_reserved beside flash deals' carves, so the SKU's total stays exact) and the
-- buyer becomes a 'pending' member whose payment is being authorized
-- (groupbuy_confirm.lua makes it count). One membership per buyer at a time.
-- Idempotent by (user, key): a retried join answers with the member as it is now.
-- KEYS[1] the SKU's key base; ARGV: id, user, display name, key, payment_id
-- Returns {status, member_state, payment_id}
-- status: pending (joined now) | replay | unknown_groupbuy | groupbuy_ended |
--         own_groupbuy | already_joined | groupbuy_full | sold_out
local base = KEYS[1]
local product = base .. ':product'
local group = base .. ':groupbuy:' .. ARGV[1]
local user, key = ARGV[2], ARGV[4]
local members = group .. ':members'
local seen = redis.call('HGET', group .. ':keys', user .. ' ' .. key)
if seen then
  local m = redis.call('HGET', members, user)
  local state = 'voided'
  if m then
    local member = cjson.decode(m)
    if member.p == seen then state = member.s end
  end
  return {'replay', state, seen}
end
local g = redis.call('HMGET', group, 'state', 'seller', 'ends', 'cap', 'taken')
if not g[1] then return {'unknown_groupbuy', '', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if g[1] ~= 'running' or now >= tonumber(g[3]) then return {'groupbuy_ended', '', ''} end
if user == g[2] then return {'own_groupbuy', '', ''} end
local m = redis.call('HGET', members, user)
if m then
  local member = cjson.decode(m)
  if member.s ~= 'voided' then return {'already_joined', member.s, member.p} end
end
if tonumber(g[5]) >= tonumber(g[4]) then return {'groupbuy_full', '', ''} end
if tonumber(redis.call('HGET', product, 'available') or '0') < 1 then
  return {'sold_out', '', ''}
end
redis.call('HINCRBY', product, 'available', -1)
redis.call('HINCRBY', product, 'deal_reserved', 1)
redis.call('HINCRBY', group, 'taken', 1)
redis.call('HSET', members, user, cjson.encode({s = 'pending', p = ARGV[5], n = ARGV[3],
  at = now}))
redis.call('HSET', group .. ':keys', user .. ' ' .. key, ARGV[5])
return {'pending', 'pending', ARGV[5]}
