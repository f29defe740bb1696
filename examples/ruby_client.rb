# Checks redis-rb (Debian's ruby-redis, 4.8) against a running token-server: the generic
# command call (`call`), the run-once cycle, a batch of TRYLOCKs with a held id inside (every
# other key comes back), a transaction (`multi`) on ids of one hash slot, and a LOCK sent again
# with its own KEY, as redis-rb's reconnect does after a lost reply.
#
#   apt-get install ruby-redis      (or: gem install redis)
#   ruby examples/ruby_client.rb [port]      # default 6409; exits non-zero on a failure
#
# Ids are made unique per run, so it can be run again against the same server.
require "redis"
require "securerandom"

def check(what, ok)
  raise "#{what}: failed" unless ok
end

port = Integer(ARGV[0] || 6409)
run = "#{Process.pid}-#{Time.now.to_i}"
r = Redis.new(port: port)

# LOCK, a refused LOCK, COMPLETE, and its retry.
key = r.call("LOCK", "rb-#{run}", "PX", 10_000)
check("LOCK returns a key", key.match?(/\A\h{32}\z/))
begin
  r.call("LOCK", "rb-#{run}")
  check("a held id is refused", false)
rescue Redis::CommandError => e
  check("the refusal is LOCKED", e.message.start_with?("LOCKED"))
end
check("COMPLETE", r.call("COMPLETE", "rb-#{run}", key) == "OK")
check("COMPLETE again", r.call("COMPLETE", "rb-#{run}", key) == "OK")

# A batch of TRYLOCKs meeting a held id: no exception, every other key handed back.
held = r.call("LOCK", "rb-held-#{run}", "PX", 10_000)
ids = ["rb-a-#{run}", "rb-held-#{run}", "rb-b-#{run}", "rb-#{run}"]
replies = r.pipelined { |p| ids.each { |id| p.call("TRYLOCK", id, "PX", 10_000) } }
check("TRYLOCK grants a free id", replies[0][0].match?(/\A\h{32}\z/) && replies[0][1].is_a?(Integer))
check("TRYLOCK says a held id is locked", replies[1][0].nil? && replies[1][1] == "locked")
check("TRYLOCK grants the next free id", replies[2][0].match?(/\A\h{32}\z/))
check("TRYLOCK says a completed id is completed", replies[3][0].nil? && replies[3][1] == "completed")
r.call("UNLOCK", "rb-held-#{run}", held)

# A transaction on ids of one hash slot.
keys = r.multi do |tx|
  tx.call("LOCK", "{rb-#{run}}.a")
  tx.call("LOCK", "{rb-#{run}}.b")
end
check("MULTI/EXEC returns both keys", keys.all? { |k| k.match?(/\A\h{32}\z/) })

# A LOCK sent again with its own key gets the same key and fence.
mine = SecureRandom.hex(16)
first = r.call("LOCK", "rb-retry-#{run}", "PX", 10_000, "KEY", mine, "WITHFENCE")
again = r.call("LOCK", "rb-retry-#{run}", "PX", 10_000, "KEY", mine, "WITHFENCE")
check("the retried LOCK gets the same grant", first == again && first[0] == mine)

puts "redis-rb #{Redis::VERSION}: ok"
