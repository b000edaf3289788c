-- Count one order (or the part of it bought from this stream) into the stream's sales
-- stats, once: the marker key makes a retried checkout count nothing twice.
-- KEYS[1] marker; KEYS[2] stats hash; KEYS[3] buyers HyperLogLog (one hash tag: the stream)
-- ARGV[1] units; ARGV[2] amount in minor units; ARGV[3] currency; ARGV[4] buyer; ARGV[5] marker ttl ms
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[5])) == false then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'orders', 1)
redis.call('HINCRBY', KEYS[2], 'units_sold', tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[2], 'gmv_minor:' .. ARGV[3], tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[2], 'orders:' .. ARGV[3], 1)
redis.call('PFADD', KEYS[3], ARGV[4])
return 1
