-- A packaging run starts recording the stream: note the node writing it and count the
-- run as open (a record made now if there is none).
-- KEYS[1] the replay record (hash); ARGV[1] node id; ARGV[2] node URL.
-- Returns {duration_s, segments, spans JSON} recorded so far.
redis.call('HSET', KEYS[1], 'node_id', ARGV[1], 'node_url', ARGV[2])
redis.call('HSETNX', KEYS[1], 'duration_s', '0')
redis.call('HSETNX', KEYS[1], 'segments', '0')
redis.call('HSETNX', KEYS[1], 'spans', '[]')
redis.call('HINCRBY', KEYS[1], 'open', 1)
return redis.call('HMGET', KEYS[1], 'duration_s', 'segments', 'spans')
