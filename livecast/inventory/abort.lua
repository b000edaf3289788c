-- Undo prepare.lua for a txn that will not commit: preparing -> held, with the hold's own
-- expiry again (if that has passed, the next sweep expires it). Idempotent.
-- KEYS[1] the SKU's key base; ARGV: hold_id, txn
-- Returns {status, state}
local base = KEYS[1]
local hold_id, txn = ARGV[1], ARGV[2]
local hold = base .. ':hold:' .. hold_id
local h = redis.call('HMGET', hold, 'state', 'expires', 'txn')
if not h[1] then return {'unknown_hold', ''} end
if h[1] ~= 'preparing' or h[3] ~= txn then return {'ok', h[1]} end
redis.call('HSET', hold, 'state', 'held', 'txn', '')
redis.call('ZADD', base .. ':live', tonumber(h[2]), hold_id)
return {'ok', 'held'}
