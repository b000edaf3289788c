-- Enter a running giveaway: one entry per person, in the order they came (the draw's
-- entry list). Entering again changes nothing (idempotent). The caller checked who may
-- enter (eligibility, not the stream's seller or hosts).
-- KEYS[1] the SKU's key base; ARGV: giveaway_id, user, display name
-- Returns {status, entries}: entered | replayed | unknown_giveaway | giveaway_ended
local giveaway = KEYS[1] .. ':giveaway:' .. ARGV[1]
local g = redis.call('HMGET', giveaway, 'state', 'ends', 'entries')
if not g[1] then return {'unknown_giveaway', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(g[2])
if g[1] ~= 'running' or (ends > 0 and now >= ends) then return {'giveaway_ended', 0} end
if redis.call('HSETNX', giveaway .. ':entrants', ARGV[2], ARGV[3]) == 0 then
  return {'replayed', tonumber(g[3])}
end
redis.call('RPUSH', giveaway .. ':entries', ARGV[2])
return {'entered', redis.call('HINCRBY', giveaway, 'entries', 1)}
