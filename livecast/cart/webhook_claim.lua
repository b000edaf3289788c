-- Claim deliveries that are due, leasing each so that a node that dies mid-delivery
-- does not lose it: the delivery becomes due again when the lease runs out.
-- KEYS[1] due sorted set (score = when due, ms); KEYS[2] deliveries hash (id -> JSON).
-- ARGV[1] how many at most; ARGV[2] lease in ms.
-- Returns a flat list: id1, json1, id2, json2, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    out[#out + 1] = id
    out[#out + 1] = body
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
