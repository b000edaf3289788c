-- Move a test-provider payment from authorized to its next state, in one atomic run.
-- KEYS: payment; ARGV: the target state (captured, voided)
-- Returns {'missing'} when there is no payment, {'same', payment} when it is already in
-- the target state, {'illegal', payment} when it is in another state than authorized,
-- {'moved', payment} with the payment as written.
-- The state is read through cjson but written by replacing its one field in the stored
-- text, so every other byte stays as the provider encoded it (cjson would rewrite numbers).
-- The field's text appears once: a quote inside a string value is escaped.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {'missing'}
end
local state = cjson.decode(raw)['state']
if state == ARGV[1] then
  return {'same', raw}
end
if state ~= 'authorized' then
  return {'illegal', raw}
end
local field = '"state":"authorized"'
local at = string.find(raw, field, 1, true)
local moved = string.sub(raw, 1, at - 1) .. '"state":"' .. ARGV[1] .. '"' .. string.sub(raw, at + #field)
redis.call('SET', KEYS[1], moved)
return {'moved', moved}
