-- Move a test-provider payment to its next state if nobody moved it since it was read.
-- KEYS: payment; ARGV: the payment as read, the payment moved
-- Returns 1 when written, 0 when it changed meanwhile (read it again).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
