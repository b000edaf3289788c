-- Add one node's coalesced likes to the total and publish the new total; the script
-- keeps totals published in the order they were counted, whichever node flushes.
-- KEYS: likes
-- ARGV: delta, channel, stream_id
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({
  type = 'likes', stream = ARGV[3], data = {total = total}}))
return total
