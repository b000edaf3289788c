-- The ids of an order list (a sorted set, newest first) after a given order, atomically,
-- so that orders added meanwhile cannot shift the page.
-- KEYS[1] the list; ARGV[1] the order id to start after, ARGV[2] how many.
-- Returns the ids, or false when the list has no such order.
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then
  return false
end
return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + tonumber(ARGV[2]))
