-- Count one order (or the part of it bought from this stream) into the stream's sales
-- stats, once: the set of counted order ids makes a resumed checkout count nothing twice.
-- KEYS[1] counted order ids (set); KEYS[2] stats hash; KEYS[3] buyer ids (set);
-- KEYS[4] the order's marker of the former scheme (an order counted before the set
-- existed); all under one hash tag, the stream's.
-- ARGV[1] order id; ARGV[2] units; ARGV[3] amount in minor units; ARGV[4] currency;
-- ARGV[5] buyer id; then, for each source other than live with lines in the order:
-- the source, its units and its amount in minor units.
-- Returns 1 if counted now, 0 if it was already.
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'orders', 1)
redis.call('HINCRBY', KEYS[2], 'units_sold', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[2], 'gmv_minor:' .. ARGV[4], tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[2], 'orders:' .. ARGV[4], 1)
redis.call('SADD', KEYS[3], ARGV[5])
for i = 6, #ARGV, 3 do
  local prefix = 'src:' .. ARGV[i] .. ':'
  redis.call('HINCRBY', KEYS[2], prefix .. 'orders', 1)
  redis.call('HINCRBY', KEYS[2], prefix .. 'units_sold', tonumber(ARGV[i + 1]))
  redis.call('HINCRBY', KEYS[2], prefix .. 'gmv_minor:' .. ARGV[4], tonumber(ARGV[i + 2]))
end
return 1
