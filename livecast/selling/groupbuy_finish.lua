-- End a closed group buy's settlement once every member is settled:
-- capturing -> succeeded, voiding -> failed.
-- KEYS[1] the SKU's key base; ARGV: id
-- Returns {status}: succeeded | failed | unsettled (members left to settle) |
--                   already_finished | running | unknown_groupbuy
local group = KEYS[1] .. ':groupbuy:' .. ARGV[1]
local g = redis.call('HMGET', group, 'state', 'taken')
if not g[1] then return {'unknown_groupbuy'} end
if g[1] == 'running' then return {'running'} end
if g[1] ~= 'capturing' and g[1] ~= 'voiding' then return {'already_finished'} end
if tonumber(g[2]) > 0 then return {'unsettled'} end
local state = 'failed'
if g[1] == 'capturing' then state = 'succeeded' end
redis.call('HSET', group, 'state', state)
return {state}
