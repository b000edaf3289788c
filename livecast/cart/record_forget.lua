-- Delete a checkout's idempotency record if it still belongs to this order: a run that
-- outlived its lease must not drop the record of a newer attempt under the same key.
-- KEYS: record; ARGV: order id
-- Returns 1 when deleted, 0 when the record is gone or another order's.
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['order_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
