-- Cancel a running giveaway (before its draw, entries or not): its unit goes back to
-- free stock and nobody wins.
-- KEYS[1] the SKU's key base; ARGV: giveaway_id
-- Returns {status, now_ms}: cancelled | giveaway_ended | unknown_giveaway
local base = KEYS[1]
local giveaway = base .. ':giveaway:' .. ARGV[1]
local state = redis.call('HGET', giveaway, 'state')
if not state then return {'unknown_giveaway', 0} end
if state ~= 'running' then return {'giveaway_ended', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HINCRBY', base .. ':product', 'deal_reserved', -1)
redis.call('HINCRBY', base .. ':product', 'available', 1)
redis.call('HSET', giveaway, 'state', 'cancelled', 'drawn', now)
return {'cancelled', now}
