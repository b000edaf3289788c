-- Open a poll on a stream, unless one is running there. Idempotent by the host's key: a
-- retried start answers with the poll the first one opened.
-- KEYS[1] the stream's poll key base ({poll:<stream>})
-- ARGV: poll_id, key, stream_id, question, options (JSON list), duration_ms (0: the host
-- closes it)
-- Returns {status, poll_id, starts_ms, ends_ms}
-- status: ok | replayed | poll_running (poll_id: the running one)
local base = KEYS[1]
local seen = redis.call('HGET', base .. ':starts', ARGV[2])
if seen then return {'replayed', seen, 0, 0} end
local current = redis.call('GET', base .. ':current')
if current then return {'poll_running', current, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = 0
if tonumber(ARGV[6]) > 0 then ends = now + tonumber(ARGV[6]) end
local poll = base .. ':poll:' .. ARGV[1]
local options = cjson.decode(ARGV[5])
redis.call('HSET', poll, 'state', 'running', 'stream', ARGV[3], 'question', ARGV[4],
  'options', ARGV[5], 'n', #options, 'starts', now, 'ends', ends, 'votes', 0, 'voters', 0)
for i = 1, #options do redis.call('HSET', poll, 'c' .. i, 0) end
redis.call('SET', base .. ':current', ARGV[1])
redis.call('ZADD', base .. ':list', now, ARGV[1])
redis.call('HSET', base .. ':starts', ARGV[2], ARGV[1])
return {'ok', ARGV[1], now, ends}
