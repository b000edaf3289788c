-- First phase of an all-or-nothing commit of holds on several SKUs (several slots):
-- held -> preparing, owned by txn, protected from expiry and release until the txn's
-- decision commits (commit.lua) or aborts (abort.lua) it. Idempotent for the same txn.
-- KEYS[1] the SKU's key base; ARGV: hold_id, txn, prepare_window_ms (after which the
-- sweeper asks for the txn's decision, aborting it if none was recorded)
-- Returns {status, state}
local base = KEYS[1]
local hold_id, txn, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
local hold = base .. ':hold:' .. hold_id
local h = redis.call('HMGET', hold, 'state', 'expires', 'txn')
if not h[1] then return {'unknown_hold', ''} end
if (h[1] == 'preparing' or h[1] == 'committed') and h[3] == txn then return {'ok', h[1]} end
if h[1] ~= 'held' then return {'not_held', h[1]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(h[2]) <= now then return {'hold_expired', 'held'} end
redis.call('HSET', hold, 'state', 'preparing', 'txn', txn)
redis.call('ZADD', base .. ':live', now + window, hold_id)
return {'ok', 'preparing'}
