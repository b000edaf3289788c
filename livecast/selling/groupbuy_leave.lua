-- A member leaves a running group buy before its end: authorized -> leaving (no longer
-- counted); the caller voids the payment, then groupbuy_settle.lua returns the unit.
-- KEYS[1] the SKU's key base; ARGV: id, user
-- Returns {status, payment_id, members, rev, now_ms}
-- status: leaving | not_joined | groupbuy_ended
local base = KEYS[1]
local group = base .. ':groupbuy:' .. ARGV[1]
local members = group .. ':members'
local g = redis.call('HMGET', group, 'state', 'ends')
if not g[1] then return {'unknown_groupbuy', '', 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if g[1] ~= 'running' or now >= tonumber(g[2]) then return {'groupbuy_ended', '', 0, 0, 0} end
local m = redis.call('HGET', members, ARGV[2])
if not m then return {'not_joined', '', 0, 0, 0} end
local member = cjson.decode(m)
if member.s ~= 'authorized' then return {'not_joined', '', 0, 0, 0} end
member.s = 'leaving'
redis.call('HSET', members, ARGV[2], cjson.encode(member))
local count = redis.call('HINCRBY', group, 'members', -1)
redis.call('HINCRBY', group, 'leaves', 1)
local rev = redis.call('HINCRBY', group, 'rev', 1)
return {'leaving', member.p, count, rev, now}
