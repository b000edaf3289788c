-- Count the audience's taps (coalesced: n at once). In taps mode every `every` taps at
-- one price knock it down one step (to the floor at most); scripts run one at a time,
-- so each step happens exactly once.
-- KEYS[1] the SKU's key base; ARGV: id, n
-- Returns {status, price, level, taps, level_taps, stepped (steps this call made), rev,
--          now_ms}
-- status: ok | unknown_knockdown | knockdown_ended
local knock = KEYS[1] .. ':knockdown:' .. ARGV[1]
local k = redis.call('HMGET', knock, 'state', 'ends', 'mode', 'every', 'price', 'step',
  'floor', 'level', 'level_taps', 'rev')
if not k[1] then return {'unknown_knockdown', 0, 0, 0, 0, 0, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if k[1] ~= 'running' or now >= tonumber(k[2]) then
  return {'knockdown_ended', 0, 0, 0, 0, 0, 0, 0}
end
local n = tonumber(ARGV[2])
local taps = redis.call('HINCRBY', knock, 'taps', n)
local price, level, level_taps = tonumber(k[5]), tonumber(k[8]), tonumber(k[9]) + n
local floor, step, every, rev = tonumber(k[7]), tonumber(k[6]), tonumber(k[4]), tonumber(k[10])
local stepped = 0
if k[3] == 'taps' then
  while level_taps >= every and price > floor do
    price = math.max(floor, price - step)
    level = level + 1
    level_taps = level_taps - every
    stepped = stepped + 1
  end
  if price <= floor then level_taps = 0 end
end
if stepped > 0 then
  rev = rev + 1
  redis.call('HSET', knock, 'price', price, 'level', level, 'level_sold', 0, 'rev', rev)
  redis.call('HINCRBY', knock, 'steps', stepped)
end
redis.call('HSET', knock, 'level_taps', level_taps)
return {'ok', price, level, taps, level_taps, stepped, rev, now}
