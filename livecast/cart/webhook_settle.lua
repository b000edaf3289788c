-- Record the outcome of one delivery attempt.
-- KEYS[1] the endpoint's queue; KEYS[2] deliveries hash; KEYS[3] dead-letter list;
-- KEYS[4] endpoints hash.
-- ARGV[1] delivery id; ARGV[2] outcome: "delivered" | "retry" | "dead", or "release"
-- (the attempt was abandoned: due again now, attempts unchanged);
-- ARGV[3] updated delivery JSON (retry/dead); ARGV[4] delay before the retry, ms;
-- ARGV[5] endpoint id.
-- Only a delivery still present is settled, so a late duplicate outcome is a no-op.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
if ARGV[2] == 'retry' or ARGV[2] == 'release' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if ARGV[2] == 'retry' then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
  return 1
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'dead' then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], 0, 9999)
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[4], ARGV[5])
end
return 1
