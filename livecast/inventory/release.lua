-- Give a hold's units back (the buyer removed it from the cart). Idempotent.
-- Loaded after give_back.lua.
-- KEYS[1] the SKU's key base; ARGV: hold_id, retention_ms (how long the finished hold is
-- kept so replays of its id keep answering).
-- Returns {status, state}: 'ok' when released now or before; otherwise the blocking state.
local base = KEYS[1]
local hold_id, retention = ARGV[1], tonumber(ARGV[2])
local hold = base .. ':hold:' .. hold_id
local h = redis.call('HMGET', hold, 'state', 'qty', 'user', 'deal')
if not h[1] then return {'unknown_hold', ''} end
if h[1] == 'released' then return {'ok', 'released'} end
if h[1] ~= 'held' then return {'not_held', h[1]} end

give_back(base, tonumber(h[2]), h[3], h[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', hold, 'state', 'released', 'finished', now)
redis.call('PEXPIRE', hold, retention)
redis.call('ZREM', base .. ':live', hold_id)
return {'ok', 'released'}
