-- Turn a hold into a sale: held -> committed. Idempotent.
-- With txn '' (a single-hold commit) the hold must be held and not past its expiry. With
-- a txn id (the second phase of a multi-SKU commit, see prepare.lua) it must have been
-- prepared by that txn; a prepared hold does not expire.
-- KEYS[1] the SKU's key base; ARGV: hold_id, txn, retention_ms
-- Returns {status, state, qty, price_minor, currency, deal_id, expires_ms, title}
local base = KEYS[1]
local hold_id, txn, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local hold = base .. ':hold:' .. hold_id
local h = redis.call('HMGET', hold, 'state', 'qty', 'user', 'deal', 'expires', 'txn', 'price_minor',
  'currency', 'title')
if not h[1] then return {'unknown_hold', ''} end
local qty = tonumber(h[2])
local function answer(status, state)
  return {status, state, qty, tonumber(h[7]), h[8], h[4], tonumber(h[5]), h[9] or ''}
end
if h[1] == 'committed' then
  if h[6] == txn then return answer('ok', 'committed') end
  return answer('not_held', 'committed')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if txn == '' then
  if h[1] ~= 'held' then return answer('not_held', h[1]) end
  if tonumber(h[5]) <= now then return answer('hold_expired', 'held') end
else
  if h[1] ~= 'preparing' or h[6] ~= txn then return answer('not_prepared', h[1]) end
end
local product = base .. ':product'
redis.call('HINCRBY', product, 'held', -qty)
redis.call('HINCRBY', product, 'sold', qty)
if h[4] ~= '' then
  local deal = base .. ':deal:' .. h[4]
  redis.call('HINCRBY', deal, 'held', -qty)
  redis.call('HINCRBY', deal, 'sold', qty)
end
redis.call('HSET', hold, 'state', 'committed', 'finished', now, 'txn', txn)
redis.call('PEXPIRE', hold, retention)
redis.call('ZREM', base .. ':live', hold_id)
return answer('ok', 'committed')
