-- End a running knock-down (by the host, or at its deadline: any node's sweep), exactly
-- once: what is left of its carve returns to free stock; holds already made stay the
-- buyers' until they check out or the holds expire.
-- KEYS[1] the SKU's key base; ARGV: id, only_if_due ('1': only past its deadline)
-- Returns {status, ends_ms, returned, now_ms}
-- status: ended | not_due | already_ended | unknown_knockdown
local base = KEYS[1]
local product = base .. ':product'
local knock = base .. ':knockdown:' .. ARGV[1]
local k = redis.call('HMGET', knock, 'state', 'ends', 'remaining')
if not k[1] then return {'unknown_knockdown', 0, 0, 0} end
if k[1] ~= 'running' then return {'already_ended', tonumber(k[2]), 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(k[2])
if ARGV[2] == '1' and now < ends then return {'not_due', ends, 0, now} end
local remaining = tonumber(k[3])
if remaining > 0 then
  redis.call('HINCRBY', product, 'available', remaining)
  redis.call('HINCRBY', product, 'deal_reserved', -remaining)
end
redis.call('HSET', knock, 'state', 'ended', 'remaining', 0, 'ended', now)
return {'ended', ends, remaining, now}
