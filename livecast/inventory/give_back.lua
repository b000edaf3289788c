-- Shared by release.lua and expire.lua, prepended to each when loaded: return a live
-- hold's units, to its flash deal while the deal is active, else to free stock, and take
-- them off the buyer's per-user (and per-deal) counts.
local function give_back(base, qty, user, deal_id)
  local product = base .. ':product'
  redis.call('HINCRBY', product, 'held', -qty)
  if redis.call('HINCRBY', base .. ':users', user, -qty) <= 0 then
    redis.call('HDEL', base .. ':users', user)
  end
  if deal_id == '' then
    redis.call('HINCRBY', product, 'available', qty)
    return
  end
  local deal = base .. ':deal:' .. deal_id
  redis.call('HINCRBY', deal, 'held', -qty)
  if redis.call('HINCRBY', deal .. ':users', user, -qty) <= 0 then
    redis.call('HDEL', deal .. ':users', user)
  end
  if redis.call('HGET', deal, 'state') == 'active' then
    redis.call('HINCRBY', deal, 'remaining', qty)
    redis.call('HINCRBY', product, 'deal_reserved', qty)
  else
    redis.call('HINCRBY', product, 'available', qty)
  end
end

