-- Close (the final tally stands) or cancel (no result) a running poll, exactly once:
-- only the call that moves it gets 'closed' or 'cancelled'. A sweep closes a poll only
-- once its end time has passed ('due'); the host closes or cancels it at any time.
-- KEYS[1] the stream's poll key base; ARGV: poll_id, target (closed | cancelled), due (0/1)
-- Returns {status, ends_ms, now_ms}
-- status: closed | cancelled | not_due | poll_closed | unknown_poll
local base = KEYS[1]
local poll = base .. ':poll:' .. ARGV[1]
local p = redis.call('HMGET', poll, 'state', 'ends')
if not p[1] then return {'unknown_poll', 0, 0} end
if p[1] ~= 'running' then return {'poll_closed', tonumber(p[2]), 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(p[2])
if ARGV[3] == '1' and (ends == 0 or now < ends) then return {'not_due', ends, now} end
-- A vote is refused from the end time on, so a poll closed late still closes then.
local closed = now
if ends > 0 and ends < now then closed = ends end
redis.call('HSET', poll, 'state', ARGV[2], 'closed', closed)
if redis.call('GET', base .. ':current') == ARGV[1] then redis.call('DEL', base .. ':current') end
return {ARGV[2], ends, now}
