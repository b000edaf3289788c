-- Return the units of every hold of one SKU whose time is up (loaded after give_back.lua).
-- Idempotent, so any number
-- of nodes may sweep the same SKU at once: a hold is expired exactly once.
-- Holds being committed ('preparing') are not expired; once their prepare deadline has
-- passed they are reported back so the sweeper can finish or abort their commit.
-- Deals of the SKU whose end time has passed ({sku}:deals, written by deal_start.lua) are
-- reported too, so the sweeper ends them even if no index outside this slot knows them.
-- KEYS[1] the SKU's key base; ARGV: max holds to look at, retention_ms
-- Returns {expired_count, next_due_ms (-1: none; the next hold expiry or deal end),
--          {deal ids touched}, {stuck hold ids}, {their txns}, {deal ids due to end}}
local base = KEYS[1]
local batch, retention = tonumber(ARGV[1]), tonumber(ARGV[2])
local live = base .. ':live'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, batch)
local expired, deals, seen, stuck, txns = 0, {}, {}, {}, {}
for _, hold_id in ipairs(due) do
  local hold = base .. ':hold:' .. hold_id
  local h = redis.call('HMGET', hold, 'state', 'qty', 'user', 'deal', 'expires', 'txn')
  if h[1] == 'held' and tonumber(h[5]) <= now then
    local deal_id = h[4]
    give_back(base, tonumber(h[2]), h[3], deal_id)
    if deal_id ~= '' and not seen[deal_id] then
      seen[deal_id] = true
      deals[#deals + 1] = deal_id
    end
    redis.call('HSET', hold, 'state', 'expired', 'finished', now)
    redis.call('PEXPIRE', hold, retention)
    redis.call('ZREM', live, hold_id)
    expired = expired + 1
  elseif h[1] == 'held' then
    redis.call('ZADD', live, tonumber(h[5]), hold_id)
  elseif h[1] == 'preparing' then
    stuck[#stuck + 1] = hold_id
    txns[#txns + 1] = h[6]
  else
    redis.call('ZREM', live, hold_id)
  end
end
local schedule = base .. ':deals'
local deals_due = redis.call('ZRANGEBYSCORE', schedule, '-inf', now, 'LIMIT', 0, batch)
local next_due = -1
local first = redis.call('ZRANGE', live, 0, 0, 'WITHSCORES')
if first[2] then next_due = tonumber(first[2]) end
first = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then
  next_due = tonumber(first[2])
end
return {expired, next_due, deals, stuck, txns, deals_due}
