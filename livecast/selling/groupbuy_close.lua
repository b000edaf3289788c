-- Close a running group buy (at its end time, or when the host ends it), exactly once:
-- with at least min_buyers authorized members it succeeds at the lowest price reached
-- (running -> capturing), else it fails (running -> voiding). Members are settled one
-- by one afterwards (groupbuy_settle.lua) and groupbuy_finish.lua ends the settlement.
-- KEYS[1] the SKU's key base; ARGV: id, only_if_due ('1': close only past its end)
-- Returns {status, ends_ms, final_minor, members, now_ms}
-- status: capturing | voiding | not_due | already_closed | unknown_groupbuy
local base = KEYS[1]
local group = base .. ':groupbuy:' .. ARGV[1]
local g = redis.call('HMGET', group, 'state', 'ends', 'members', 'min_buyers', 'tiers')
if not g[1] then return {'unknown_groupbuy', 0, 0, 0, 0} end
if g[1] ~= 'running' then return {'already_closed', tonumber(g[2]), 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(g[2])
if ARGV[2] == '1' and now < ends then return {'not_due', ends, 0, 0, now} end
local count = tonumber(g[3])
local final = nil
for threshold, price in string.gmatch(g[5], '(%d+) (%d+)') do
  if final == nil or count >= tonumber(threshold) then final = tonumber(price) end
end
local state = 'voiding'
if count >= tonumber(g[4]) then state = 'capturing' end
redis.call('HSET', group, 'state', state, 'ended', now, 'final_minor', final,
  'final_members', count)
return {state, ends, final, count, now}
