-- One segment more was written to disk; a record deleted meanwhile is not made again.
-- KEYS[1] the replay record; ARGV[1] its duration (s); ARGV[2] its program date time
-- (unix ms); ARGV[3] the spans JSON (empty: unchanged); ARGV[4] '1' if the poster is
-- written now.
-- Returns 1 if counted, 0 if the record is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HINCRBYFLOAT', KEYS[1], 'duration_s', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'segments', 1)
redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'spans', ARGV[3])
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'poster', '1')
end
return 1
