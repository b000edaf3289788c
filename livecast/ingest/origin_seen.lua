-- Note that a node holds (or has just claimed) a stream's origin, at Redis's time, so
-- that once its record is gone every node can tell that the stream had an origin and
-- since when none answers for it.
-- KEYS: seen
-- ARGV: ttl_ms
-- Returns the time noted (epoch milliseconds).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], now, 'PX', ARGV[1])
return now
