-- Cancel an auction before its first bid: its unit goes back to free stock. Once anyone
-- has bid, the auction runs to its end.
-- KEYS[1] the SKU's key base; ARGV: auction_id
-- Returns {status, now_ms}: cancelled | auction_has_bids | auction_ended | unknown_auction
local base = KEYS[1]
local auction = base .. ':auction:' .. ARGV[1]
local a = redis.call('HMGET', auction, 'state', 'ends', 'leader')
if not a[1] then return {'unknown_auction', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if a[1] ~= 'running' or now >= tonumber(a[2]) then return {'auction_ended', now} end
if a[3] ~= '' then return {'auction_has_bids', now} end
redis.call('HINCRBY', base .. ':product', 'deal_reserved', -1)
redis.call('HINCRBY', base .. ':product', 'available', 1)
redis.call('HSET', auction, 'state', 'cancelled', 'ended', now)
return {'cancelled', now}
