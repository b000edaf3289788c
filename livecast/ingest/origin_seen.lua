-- Note that a stream has an origin with a publisher, at Redis's time, so that once its
-- origin record is gone every node can tell that the stream had one, and since when
-- none answers for it.
-- KEYS: seen
-- ARGV: ttl_ms, 'refresh' (only renew a note that exists: the origin's heartbeat) or ''
-- Returns the time noted (epoch milliseconds), or nil when there was nothing to renew.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == 'refresh' then
  if redis.call('SET', KEYS[1], now, 'PX', ARGV[1], 'XX') then
    return now
  end
  return false
end
redis.call('SET', KEYS[1], now, 'PX', ARGV[1])
return now
