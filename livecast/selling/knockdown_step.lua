-- Time mode: knock the price down one step once its step time has come (any node's
-- sweep; the step time moves on by exactly one interval, so each step happens once).
-- KEYS[1] the SKU's key base; ARGV: id
-- Returns {status, price, level, next_step_ms, rev, now_ms}
-- status: stepped | not_due | at_floor | not_running | unknown_knockdown
local knock = KEYS[1] .. ':knockdown:' .. ARGV[1]
local k = redis.call('HMGET', knock, 'state', 'mode', 'every', 'price', 'step', 'floor',
  'level', 'next_step', 'rev')
if not k[1] then return {'unknown_knockdown', 0, 0, 0, 0, 0} end
local price, level, next_step = tonumber(k[4]), tonumber(k[7]), tonumber(k[8])
local rev = tonumber(k[9])
if k[1] ~= 'running' or k[2] ~= 'time' then return {'not_running', price, level, 0, rev, 0} end
local floor = tonumber(k[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if price <= floor then return {'at_floor', price, level, 0, rev, now} end
if now < next_step then return {'not_due', price, level, next_step, rev, now} end
price = math.max(floor, price - tonumber(k[5]))
level = level + 1
next_step = next_step + tonumber(k[3])
rev = rev + 1
redis.call('HSET', knock, 'price', price, 'level', level, 'level_sold', 0, 'level_taps', 0,
  'next_step', next_step, 'rev', rev)
redis.call('HINCRBY', knock, 'steps', 1)
return {'stepped', price, level, next_step, rev, now}
