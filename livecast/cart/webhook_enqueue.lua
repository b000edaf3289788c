-- Enqueue an event's deliveries once: an event id seen before is not enqueued again, so a
-- retried checkout does not send its events twice.
-- KEYS[1] due sorted set; KEYS[2] deliveries hash; KEYS[3] the event's marker
-- ARGV[1] marker ttl ms; then delivery id, delivery JSON pairs.
-- Returns 1 if enqueued, 0 if the event was already.
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', tonumber(ARGV[1])) == false then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
end
return 1
