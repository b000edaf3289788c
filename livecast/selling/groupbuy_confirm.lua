-- The payment of a pending member was authorized: the member counts now (pending ->
-- authorized), if the group buy still runs; once it has closed, the member is left
-- pending for the settlement to void.
-- KEYS[1] the SKU's key base; ARGV: id, user, payment_id
-- Returns {status, members, rev, now_ms}
-- status: authorized | already (it was: member_state in place of members) |
--         groupbuy_ended | not_joined
local base = KEYS[1]
local group = base .. ':groupbuy:' .. ARGV[1]
local members = group .. ':members'
local m = redis.call('HGET', members, ARGV[2])
if not m then return {'not_joined', 0, 0, 0} end
local member = cjson.decode(m)
if member.p ~= ARGV[3] then return {'not_joined', 0, 0, 0} end
local g = redis.call('HMGET', group, 'state', 'members', 'rev')
if member.s ~= 'pending' then return {'already', member.s, tonumber(g[3]), 0} end
if g[1] ~= 'running' then return {'groupbuy_ended', 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
member.s = 'authorized'
redis.call('HSET', members, ARGV[2], cjson.encode(member))
local count = redis.call('HINCRBY', group, 'members', 1)
redis.call('HINCRBY', group, 'joins', 1)
local rev = redis.call('HINCRBY', group, 'rev', 1)
return {'authorized', count, rev, now}
