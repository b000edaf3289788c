-- Make sure a hold id that has no hold never gets one: a cart line whose hold is not
-- there is being dropped, and a reservation still on its way for it (the line is written
-- first) must then find the id taken instead of holding units for no cart. Writes a
-- finished ('released') record, kept for the retention time, unless the hold exists.
-- KEYS[1] the SKU's key base; ARGV: hold_id, user, retention_ms
-- Returns 1 when this call wrote it, 0 when the hold exists.
local hold = KEYS[1] .. ':hold:' .. ARGV[1]
if redis.call('EXISTS', hold) == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', hold, 'state', 'released', 'qty', 0, 'user', ARGV[2], 'deal', '',
  'created', now, 'expires', now, 'finished', now, 'price_minor', 0, 'currency', '',
  'txn', '', 'title', '')
redis.call('PEXPIRE', hold, tonumber(ARGV[3]))
return 1
