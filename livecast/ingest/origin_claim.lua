-- Claim a stream's origin record for this node, or refresh this node's own claim.
-- Refreshing also re-creates a record that vanished (it expired while Redis was out of
-- reach), so a node that still holds the publisher keeps being found.
-- KEYS: origin
-- ARGV: record (this node's), ttl_ms
-- Returns nil when the record is this node's now, else the record of the node holding it.
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
return current
