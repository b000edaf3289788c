-- Delete one chat message from history and tell everyone: XDEL it, then append a
-- chat.deleted entry (so a reconnecting client replays the deletion) and publish it.
-- KEYS: chat, chat-floor
-- ARGV: offset, maxlen, channel, stream_id
-- Returns the deletion's own offset, or false if there is no such message.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 or found[1][2][2] ~= 'chat.message' then
  return false
end
redis.call('XDEL', KEYS[1], ARGV[1])
local maxlen = tonumber(ARGV[2])
local excess = redis.call('XLEN', KEYS[1]) - maxlen + 1
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[2], gone[#gone][1])
end
local data = {id = ARGV[1]}
local offset = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*',
  't', 'chat.deleted', 'd', cmsgpack.pack(data))
redis.call('PUBLISH', ARGV[3], cmsgpack.pack({
  type = 'chat.deleted', stream = ARGV[4], offset = offset, data = data}))
return offset
