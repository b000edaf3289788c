-- Reschedule a SKU in the sweep schedule after a sweep of it, without losing a newer mark.
-- A mark scored after the sweep's cutoff was written by a reservation made after the
-- sweep looked, so it is kept (or moved earlier); otherwise the mark becomes the SKU's
-- next hold expiry, or goes away when the SKU has no live holds.
-- KEYS[1] the schedule (sorted set SKU -> ms); ARGV: sku, cutoff_ms, next_due_ms (-1: none)
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
local cutoff, nxt = tonumber(ARGV[2]), tonumber(ARGV[3])
if cur and tonumber(cur) > cutoff then
  if nxt >= 0 and nxt < tonumber(cur) then redis.call('ZADD', KEYS[1], nxt, ARGV[1]) end
  return 0
end
if nxt < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], nxt, ARGV[1])
end
return 1
