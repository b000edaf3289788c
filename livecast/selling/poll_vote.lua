-- Vote in a running poll: one vote per person, changeable until the poll closes (the
-- old option loses the vote, the new one gains it, in one step). Voting again for the
-- same option changes nothing (idempotent).
-- KEYS[1] the stream's poll key base; ARGV: poll_id, user, option (1-based)
-- Returns {status, option, votes, voters, c1, c2, ...}
-- status: voted | changed | unchanged | unknown_poll | poll_closed | invalid_option
local poll = KEYS[1] .. ':poll:' .. ARGV[1]
local p = redis.call('HMGET', poll, 'state', 'ends', 'n')
if not p[1] then return {'unknown_poll'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(p[2])
if p[1] ~= 'running' or (ends > 0 and now >= ends) then return {'poll_closed'} end
local n, option = tonumber(p[3]), tonumber(ARGV[3])
if option < 1 or option > n then return {'invalid_option'} end
local ballots = poll .. ':ballots'
local old = tonumber(redis.call('HGET', ballots, ARGV[2]) or '0')
local status = 'unchanged'
if old ~= option then
  redis.call('HSET', ballots, ARGV[2], option)
  redis.call('HINCRBY', poll, 'c' .. option, 1)
  redis.call('HINCRBY', poll, 'votes', 1)
  if old == 0 then
    status = 'voted'
    redis.call('HINCRBY', poll, 'voters', 1)
  else
    status = 'changed'
    redis.call('HINCRBY', poll, 'c' .. old, -1)
  end
end
local counts = {}
for i = 1, n do counts[i] = 'c' .. i end
local reply = {status, option}
for _, v in ipairs(redis.call('HMGET', poll, 'votes', 'voters', unpack(counts))) do
  reply[#reply + 1] = tonumber(v)
end
return reply
