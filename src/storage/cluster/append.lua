local head = tonumber(redis.call('GET', KEYS[1]) or '0')
if head + 1 ~= tonumber(ARGV[1]) then
  return {head, redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', 1024)}
end
redis.call('XADD', KEYS[2], ARGV[1] .. '-0', unpack(ARGV, 2))
redis.call('SET', KEYS[1], ARGV[1])
return {head}
