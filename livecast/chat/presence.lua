-- Record this node's viewer count for a stream, drop counts of nodes whose entries
-- expired (they died), keep the peak, and publish the total when it changed.
-- KEYS: viewers, viewers-last, peak
-- ARGV: node, count, ttl_ms, channel, stream_id
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + ttl))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local value = all[i + 1]
  local sep = string.find(value, ':', 1, true)
  if tonumber(string.sub(value, sep + 1)) < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    total = total + tonumber(string.sub(value, 1, sep - 1))
  end
end
if #all > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if total > tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[3], total)
end
if redis.call('GET', KEYS[2]) ~= tostring(total) then
  redis.call('SET', KEYS[2], total)
  redis.call('PUBLISH', ARGV[4], cmsgpack.pack({
    type = 'viewers', stream = ARGV[5], data = {count = total}}))
end
return total
