-- Delete a checkout's lease if this run still holds it (never another run's).
-- KEYS: lease
-- ARGV: token (this run's)
-- Returns 1 when it was deleted, 0 when it was not this run's (or already gone).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
