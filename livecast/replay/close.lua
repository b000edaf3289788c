-- A packaging run stopped recording (its last segment written).
-- KEYS[1] the replay record. Returns the runs still open, -1 if the record is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local open = redis.call('HINCRBY', KEYS[1], 'open', -1)
if open < 0 then
  redis.call('HSET', KEYS[1], 'open', 0)
  open = 0
end
return open
