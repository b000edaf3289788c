-- Update a stream's editable fields unless it has ended, atomically.
-- KEYS[1] stream hash; KEYS[2] the scheduled index.
-- ARGV: field, value pairs. A 'scheduled_start' field also moves a scheduled stream in
-- the scheduled index, which is ordered by start time.
-- Returns {"ok", state} | {"not_found", ""} | {"illegal", state}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return {'not_found', ''}
end
if state == 'ended' then
  return {'illegal', state}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'scheduled_start' and state == 'scheduled' then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[i + 1]), redis.call('HGET', KEYS[1], 'id'))
  end
end
redis.call('HSET', KEYS[1], 'updated_at', now)
return {'ok', state}
