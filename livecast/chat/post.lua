-- Post one chat message: dedupe, ban/timeout, word filter, slow mode, rate limit, then
-- append to the chat stream (keeping the trim floor) and publish, all atomically.
-- KEYS: chat, chat-floor, dedupe, rate, slow, mod, bans, words, messages (count)
-- ARGV: user, name, role, text, tokens (" w1 w2 "), client_id, exempt (0/1),
--       rate_max, rate_window_ms, maxlen, dedupe_ttl_ms, channel, stream_id
-- Returns {status, detail}: {"ok", offset} | {"dup", offset} | {"banned", "0"} |
--   {"timed_out", ms left} | {"word_filtered", word} | {"slow_mode", ms left} |
--   {"rate_limited", ms left}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dup = redis.call('GET', KEYS[3])
if dup then
  return {'dup', dup}
end
local exempt = ARGV[7] == '1'
local window = tonumber(ARGV[9])
local slow = 0
if not exempt then
  local until_ms = redis.call('HGET', KEYS[7], ARGV[1])
  if until_ms then
    until_ms = tonumber(until_ms)
    if until_ms == 0 then
      return {'banned', '0'}
    end
    if until_ms > now then
      return {'timed_out', tostring(until_ms - now)}
    end
    redis.call('HDEL', KEYS[7], ARGV[1])
  end
  for _, word in ipairs(redis.call('SMEMBERS', KEYS[8])) do
    if string.find(ARGV[5], ' ' .. word .. ' ', 1, true) then
      return {'word_filtered', word}
    end
  end
  slow = tonumber(redis.call('HGET', KEYS[6], 'slow_mode_s') or '0')
  if slow > 0 then
    local left = redis.call('PTTL', KEYS[5])
    if left > 0 then
      return {'slow_mode', tostring(left)}
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[8]) then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {'rate_limited', tostring(math.max(1, tonumber(oldest[2]) + window - now))}
  end
end

local maxlen = tonumber(ARGV[10])
local excess = redis.call('XLEN', KEYS[1]) - maxlen + 1
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[2], gone[#gone][1])
end
local data = {
  user = {id = ARGV[1], name = ARGV[2], role = ARGV[3]},
  text = ARGV[4],
  ts = now,
  client_id = ARGV[6],
}
local offset = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*',
  't', 'chat.message', 'd', cmsgpack.pack(data))
data.id = offset
redis.call('PUBLISH', ARGV[12], cmsgpack.pack({
  type = 'chat.message', stream = ARGV[13], offset = offset, data = data}))
redis.call('SET', KEYS[3], offset, 'PX', ARGV[11])
redis.call('INCR', KEYS[9])
if not exempt then
  redis.call('ZADD', KEYS[4], now, offset)
  redis.call('PEXPIRE', KEYS[4], window)
  if slow > 0 then
    redis.call('SET', KEYS[5], '1', 'PX', math.floor(slow * 1000))
  end
end
return {'ok', offset}
