-- The stream ended: its replay (if anything was recorded) is listed from now on.
-- KEYS[1] the replay record; KEYS[2] the index of ended replays (sorted set by end time).
-- ARGV[1] the end time (unix ms); ARGV[2] the stream id.
-- Returns 1 if listed, 0 if there is no record.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSETNX', KEYS[1], 'ended_ms', ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[2])
return 1
