-- Enqueue an event's deliveries once: an event id seen before is not enqueued again, so a
-- retried checkout does not send its events twice. Each delivery joins its endpoint's
-- queue, due now (so each queue is sent oldest first).
-- KEYS[1] deliveries hash; KEYS[2] the event's marker; KEYS[3] endpoints hash;
-- KEYS[3 + i] the queue (sorted set) of the i-th delivery's endpoint.
-- ARGV[1] marker ttl ms; then per delivery: id, JSON, endpoint id, endpoint URL.
-- Returns 1 if enqueued, 0 if the event was already.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[1])) == false then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, (#ARGV - 1) / 4 do
  local a = 4 * i - 2
  redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 1])
  redis.call('ZADD', KEYS[3 + i], now, ARGV[a])
  redis.call('HSET', KEYS[3], ARGV[a + 2], ARGV[a + 3])
end
return 1
