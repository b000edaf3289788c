-- Move a stream to another state if its current state allows it, atomically.
-- KEYS[1] stream hash; KEYS[2] index of the current state is found from the hash;
-- KEYS[2..4] the state indexes (scheduled, live, ended), all under one hash tag.
-- ARGV[1] target state; ARGV[2..] states it may be entered from.
-- Returns {"ok", previous} | {"not_found", ""} | {"illegal", current}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'not_found', ''}
end
local allowed = false
for i = 2, #ARGV do
  if ARGV[i] == state then allowed = true end
end
if not allowed then
  return {'illegal', state}
end
local target = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = {scheduled = KEYS[2], live = KEYS[3], ended = KEYS[4]}
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('ZREM', index[state], id)
redis.call('ZADD', index[target], now, id)
redis.call('HSET', KEYS[1], 'state', target, target .. '_at', now, 'updated_at', now)
return {'ok', state}
