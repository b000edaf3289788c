-- Claim deliveries that are due, from the queues of the endpoints that have free slots,
-- leasing each so that a node that dies mid-delivery does not lose it: the delivery
-- becomes due again when the lease runs out.
-- KEYS[1] deliveries hash (id -> JSON); KEYS[2] endpoints hash (endpoint id -> URL);
-- KEYS[2 + i] the i-th endpoint's queue (sorted set, score = when due, ms).
-- ARGV[1] lease in ms; ARGV[2] how many at most in all; then per queue: endpoint id,
-- how many at most from it.
-- Returns a flat list: endpoint1, id1, json1, endpoint2, id2, json2, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS - 2 do
  if budget <= 0 then
    break
  end
  local queue, endpoint = KEYS[2 + i], ARGV[1 + 2 * i]
  local limit = math.min(tonumber(ARGV[2 + 2 * i]), budget)
  local ids = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local body = redis.call('HGET', KEYS[1], id)
    if body then
      redis.call('ZADD', queue, now + lease, id)
      out[#out + 1] = endpoint
      out[#out + 1] = id
      out[#out + 1] = body
      budget = budget - 1
    else
      redis.call('ZREM', queue, id)
    end
  end
  if redis.call('ZCARD', queue) == 0 then
    redis.call('HDEL', KEYS[2], endpoint)
  end
end
return out
