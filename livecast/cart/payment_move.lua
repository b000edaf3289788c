-- Move a test-provider payment from authorized to its next state, in one atomic run.
-- KEYS: payment; ARGV: the target state (captured, voided), and for a capture of less
-- than the authorized amount: the captured Money's JSON, its amount_minor and currency
-- ('', -1, '': the whole amount)
-- Returns {'missing'} when there is no payment, {'same', payment} when it is already in
-- the target state, {'illegal', payment} when it is in another state than authorized,
-- {'over', payment} when the capture asks more than was authorized (or another
-- currency), {'moved', payment} with the payment as written.
-- The state is read through cjson but written by replacing its one field in the stored
-- text, so every other byte stays as the provider encoded it (cjson would rewrite numbers).
-- The field's text appears once: a quote inside a string value is escaped.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {'missing'}
end
local payment = cjson.decode(raw)
local state = payment['state']
if state == ARGV[1] then
  return {'same', raw}
end
if state ~= 'authorized' then
  return {'illegal', raw}
end
local part = ARGV[2] or ''
if part ~= '' then
  local authorized = payment['amount']
  if authorized['currency'] ~= ARGV[4] or tonumber(ARGV[3]) > authorized['amount_minor'] then
    return {'over', raw}
  end
end
local field = '"state":"authorized"'
local at = string.find(raw, field, 1, true)
local moved = string.sub(raw, 1, at - 1) .. '"state":"' .. ARGV[1] .. '"' .. string.sub(raw, at + #field)
if part ~= '' then
  local none = '"captured":null'
  local spot = string.find(moved, none, 1, true)
  if spot then
    moved = string.sub(moved, 1, spot - 1) .. '"captured":' .. part .. string.sub(moved, spot + #none)
  else
    moved = string.sub(moved, 1, #moved - 1) .. ',"captured":' .. part .. '}'
  end
end
redis.call('SET', KEYS[1], moved)
return {'moved', moved}
