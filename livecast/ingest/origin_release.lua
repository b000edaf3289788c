-- Delete a stream's origin record if it is still this node's (never another node's).
-- KEYS: origin
-- ARGV: record (this node's)
-- Returns 1 when it was deleted, 0 when it was not this node's (or already gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
