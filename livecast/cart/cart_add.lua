-- Put a line in a buyer's cart before its hold is made, so a hold never exists that no
-- cart lists. Idempotent by hold id.
-- KEYS[1] the cart hash; ARGV: hold_id, line JSON, sku, max_lines
-- Returns 'added' | 'exists' (a line for this hold and SKU is there) |
--         {'hold_conflict', sku of the existing line} | 'cart_full'
local cart = KEYS[1]
local line = redis.call('HGET', cart, ARGV[1])
if line then
  local sku = cjson.decode(line)['sku']
  if sku ~= ARGV[3] then return {'hold_conflict', sku} end
  return 'exists'
end
if redis.call('HLEN', cart) >= tonumber(ARGV[4]) then return 'cart_full' end
redis.call('HSET', cart, ARGV[1], ARGV[2])
return 'added'
