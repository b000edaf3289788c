-- Draw a giveaway's winner (the host, or any node's sweep once its end time has
-- passed), exactly once: only the call that draws gets 'drawn' or 'no_entries'.
-- The winner is a deterministic function of the seed committed to at the start and the
-- entry list, in entry order (anyone can check it once the seed is revealed):
--   index = int(first 12 hex digits of SHA-1(seed .. "\n" .. join(entrants, "\n")), 16)
--           mod len(entrants)
-- The unit becomes the winner's hold at a zero price (the caller commits it into a
-- zero-priced order at once, with prize_ms to spare); with no entry it goes back to
-- free stock.
-- KEYS[1] the SKU's key base; ARGV: giveaway_id, hold_id, due (0/1), prize_ms
-- Returns {status, ends_ms, now_ms}
-- status: drawn | no_entries | not_due | already_drawn (ends_ms: 0; the state follows)
--         | unknown_giveaway
local base = KEYS[1]
local product = base .. ':product'
local giveaway = base .. ':giveaway:' .. ARGV[1]
local g = redis.call('HMGET', giveaway, 'state', 'ends', 'seed', 'currency', 'title')
if not g[1] then return {'unknown_giveaway', 0, 0} end
if g[1] ~= 'running' then return {'already_drawn', 0, 0, g[1]} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(g[2])
if ARGV[3] == '1' and (ends == 0 or now < ends) then return {'not_due', ends, now} end
redis.call('HINCRBY', product, 'deal_reserved', -1)
local entrants = redis.call('LRANGE', giveaway .. ':entries', 0, -1)
if #entrants == 0 then
  redis.call('HINCRBY', product, 'available', 1)
  redis.call('HSET', giveaway, 'state', 'no_entries', 'drawn', now)
  return {'no_entries', ends, now}
end
local digest = redis.sha1hex(g[3] .. '\n' .. table.concat(entrants, '\n'))
local index = tonumber(string.sub(digest, 1, 12), 16) % #entrants
local winner = entrants[index + 1]
local name = redis.call('HGET', giveaway .. ':entrants', winner)
local hold_id = ARGV[2]
local expires = now + tonumber(ARGV[4])
redis.call('HSET', base .. ':hold:' .. hold_id, 'state', 'held', 'qty', 1, 'user', winner,
  'deal', '', 'created', now, 'expires', expires, 'price_minor', 0, 'currency', g[4],
  'txn', '', 'title', g[5])
redis.call('ZADD', base .. ':live', expires, hold_id)
redis.call('HINCRBY', base .. ':users', winner, 1)
redis.call('HINCRBY', product, 'held', 1)
redis.call('HSET', giveaway, 'state', 'drawn', 'drawn', now, 'winner', winner,
  'winner_name', name, 'winner_index', index, 'hold', hold_id)
return {'drawn', ends, now}
