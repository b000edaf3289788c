-- Reserve units of one SKU (optionally from a flash deal) as holds that expire.
-- Takes one or more reservations for the same SKU; each is checked and made in turn, in
-- the order given, and the whole call is atomic. Per reservation: stock (or the deal's
-- quantity and window) and per-user limits are checked and the hold created.
-- Idempotent by hold id: a replay returns the hold already made and reserves nothing.
-- The hold keeps the product's title and price as they were (what the buyer added).
-- KEYS[1] the SKU's key base "<prefix>{sku:<SKU>}"; every key used shares its hash tag.
-- ARGV: 8 per reservation: hold_id, qty, user, ttl_ms, per_user_limit (0: none),
--       deal_id ('': none), stream_id and its seller ('': not checked): a deal must run
--       on that stream, and a product another seller owns must be granted to the stream
--       or its seller (the grants hash, {sku}:grants, field seller:<id> or stream:<id>)
-- Returns one reply per reservation:
--   {status, state, qty, expires_ms, price_minor, currency, deal_id, left, title, now_ms}
-- status: ok | exists | hold_conflict | unknown_sku | product_not_granted | unknown_deal |
--         deal_not_in_stream |
--         deal_ended | deal_not_started | over_limit | sold_out | insufficient_stock | error
local base = KEYS[1]
local product = base .. ':product'
local users = base .. ':users'
local live = base .. ':live'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Counters are read once, kept here, and written back once at the end.
local p = redis.call('HMGET', product, 'available', 'price_minor', 'currency', 'held', 'deal_reserved',
  'title', 'owner')
local currency = p[3]
local available, held, carved = tonumber(p[1]), tonumber(p[4]), tonumber(p[5])
local product_dirty = false
local deals = {}

local function load_deal(deal_id)
  local d = deals[deal_id]
  if d == nil then
    local key = base .. ':deal:' .. deal_id
    local r = redis.call('HMGET', key, 'state', 'remaining', 'starts', 'ends', 'per_user',
      'price_minor', 'held', 'stream')
    if not r[1] then
      d = false
    else
      d = {key = key, state = r[1], remaining = tonumber(r[2]), starts = tonumber(r[3]),
        ends = tonumber(r[4]), per_user = tonumber(r[5]), price = r[6], held = tonumber(r[7]),
        stream = r[8], dirty = false}
    end
    deals[deal_id] = d
  end
  return d
end

local granted = {}

-- Whether a stream of this seller may sell the product: no owner, its owner, or a grant.
local function may_sell(stream_id, seller)
  local owner = p[7]
  if stream_id == '' or not owner or owner == '' or owner == seller then return true end
  local key = seller .. ' ' .. stream_id
  if granted[key] == nil then
    local g = redis.call('HMGET', base .. ':grants', 'seller:' .. seller, 'stream:' .. stream_id)
    granted[key] = (g[1] or g[2]) and true or false
  end
  return granted[key]
end

local function reserve_one(hold_id, qty, user, ttl, limit, deal_id, stream_id, seller)
  local hold = base .. ':hold:' .. hold_id
  local h = redis.call('HMGET', hold, 'state', 'qty', 'user', 'deal', 'expires', 'price_minor',
    'currency', 'title')
  if h[1] then
    local status = 'exists'
    if h[3] ~= user or tonumber(h[2]) ~= qty or h[4] ~= deal_id then status = 'hold_conflict' end
    return {status, h[1], tonumber(h[2]), tonumber(h[5]), tonumber(h[6]), h[7], h[4], -1,
      h[8] or '', now}
  end
  if not currency then return {'unknown_sku'} end
  if not may_sell(stream_id, seller) then return {'product_not_granted'} end
  if limit > 0 then
    local mine = tonumber(redis.call('HGET', users, user) or '0')
    if mine + qty > limit then return {'over_limit', '', mine} end
  end
  local price, left
  local d = nil
  if deal_id ~= '' then
    d = load_deal(deal_id)
    if not d then return {'unknown_deal'} end
    if stream_id ~= '' and d.stream ~= stream_id then return {'deal_not_in_stream'} end
    if d.state ~= 'active' or now >= d.ends then return {'deal_ended'} end
    if now < d.starts then return {'deal_not_started'} end
    if d.per_user > 0 then
      local mine = tonumber(redis.call('HGET', d.key .. ':users', user) or '0')
      if mine + qty > d.per_user then return {'over_limit', '', mine} end
    end
    if d.remaining < qty then
      if d.remaining == 0 then return {'sold_out'} end
      return {'insufficient_stock', '', d.remaining}
    end
    price, left = d.price, d.remaining - qty
  else
    if available < qty then
      if available == 0 then return {'sold_out'} end
      return {'insufficient_stock', '', available}
    end
    price, left = p[2], available - qty
  end
  local expires = now + ttl
  redis.call('HSET', hold, 'state', 'held', 'qty', qty, 'user', user, 'deal', deal_id,
    'created', now, 'expires', expires, 'price_minor', price, 'currency', currency, 'txn', '',
    'title', p[6] or '')
  redis.call('ZADD', live, expires, hold_id)
  redis.call('HINCRBY', users, user, qty)
  if d then
    redis.call('HINCRBY', d.key .. ':users', user, qty)
    d.remaining, d.held, d.dirty = d.remaining - qty, d.held + qty, true
    carved = carved - qty
  else
    available = available - qty
  end
  held = held + qty
  product_dirty = true
  return {'ok', 'held', qty, expires, tonumber(price), currency, deal_id, left, p[6] or '', now}
end

local replies = {}
for i = 1, #ARGV, 8 do
  local ok, reply = pcall(reserve_one, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2],
    tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], ARGV[i + 7])
  if not ok then reply = {'error', tostring(reply)} end
  replies[#replies + 1] = reply
end
if product_dirty then
  redis.call('HSET', product, 'available', available, 'held', held, 'deal_reserved', carved)
end
for _, d in pairs(deals) do
  if d and d.dirty then
    redis.call('HSET', d.key, 'remaining', d.remaining, 'held', d.held)
  end
end
return replies
