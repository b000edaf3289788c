-- Move one delivery from the single queue of earlier versions into its endpoint's queue,
-- keeping its due time; one whose delivery is gone is dropped.
-- KEYS[1] the former queue; KEYS[2] deliveries hash; KEYS[3] endpoints hash;
-- KEYS[4] the endpoint's queue.
-- ARGV[1] delivery id; ARGV[2] endpoint id; ARGV[3] endpoint URL.
-- Returns 1 if moved, 0 if not (gone, or moved by another node).
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[4], due, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return 1
