<?php
// Checks phpredis (Debian's php-redis, 5.3) against a running token-server: the generic
// command call (`rawCommand`), the run-once cycle, a batch of TRYLOCKs with a held id inside
// (every other key comes back), a transaction (`multi`) on ids of one hash slot, and a LOCK
// sent again with its own KEY.
//
//   apt-get install php-cli php-redis      (or: pecl install redis)
//   php examples/php_client.php [port]      # default 6409; exits non-zero on a failure
//
// phpredis throws RedisException for an error reply, and reads a nil inside an array as false.
// Ids are made unique per run, so it can be run again against the same server.

function check(string $what, bool $ok): void
{
    if (!$ok) {
        fwrite(STDERR, "$what: failed\n");
        exit(1);
    }
}

function is_key($k): bool
{
    return is_string($k) && preg_match('/^[0-9a-f]{32}$/', $k) === 1;
}

$port = (int)($argv[1] ?? 6409);
$run = getmypid() . "-" . time();
$r = new Redis();
$r->connect("127.0.0.1", $port);

// LOCK, a refused LOCK, COMPLETE, and its retry.
$key = $r->rawCommand("LOCK", "php-$run", "PX", 10000);
check("LOCK returns a key", is_key($key));
try {
    $r->rawCommand("LOCK", "php-$run");
    check("a held id is refused", false);
} catch (RedisException $e) {
    check("the refusal is LOCKED", str_starts_with($e->getMessage(), "LOCKED"));
}
// +OK comes back as true.
check("COMPLETE", $r->rawCommand("COMPLETE", "php-$run", $key) === true);
check("COMPLETE again", $r->rawCommand("COMPLETE", "php-$run", $key) === true);

// A batch of TRYLOCKs meeting a held id: no exception, every other key handed back.
$held = $r->rawCommand("LOCK", "php-held-$run", "PX", 10000);
$batch = $r->pipeline();
foreach (["php-a-$run", "php-held-$run", "php-b-$run", "php-$run"] as $id) {
    $batch->rawCommand("TRYLOCK", $id, "PX", 10000);
}
$replies = $batch->exec();
check("TRYLOCK grants a free id", is_key($replies[0][0]) && is_int($replies[0][1]));
check("TRYLOCK says a held id is locked", $replies[1][0] === false && $replies[1][1] === "locked");
check("TRYLOCK grants the next free id", is_key($replies[2][0]));
check("TRYLOCK says a completed id is completed", $replies[3][1] === "completed");
$r->rawCommand("UNLOCK", "php-held-$run", $held);

// A transaction on ids of one hash slot.
$keys = $r->multi()
    ->rawCommand("LOCK", "{php-$run}.a")
    ->rawCommand("LOCK", "{php-$run}.b")
    ->exec();
check("MULTI/EXEC returns both keys", is_key($keys[0]) && is_key($keys[1]));

// A LOCK sent again with its own key gets the same key and fence.
$mine = bin2hex(random_bytes(16));
$first = $r->rawCommand("LOCK", "php-retry-$run", "PX", 10000, "KEY", $mine, "WITHFENCE");
$again = $r->rawCommand("LOCK", "php-retry-$run", "PX", 10000, "KEY", $mine, "WITHFENCE");
check("the retried LOCK gets the same grant", $first === $again && $first[0] === $mine);

echo "phpredis " . phpversion("redis") . ": ok\n";
