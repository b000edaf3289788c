-- Delete a stream's ended-playlist note if it still names this node (never another's).
-- KEYS: note
-- ARGV: record (this node's)
-- Returns 1 when it was deleted, 0 when it names another node (or is gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
