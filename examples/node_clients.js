// Checks the two Node.js Redis clients against a running token-server: the generic command
// call (ioredis `call`, node-redis `sendCommand`), the redlock-style LOCK / RENEW / UNLOCK
// cycle, and transactions (`multi()`) on ids of one hash slot.
//
//   npm install ioredis redis
//   node examples/node_clients.js [port]      # default 6409; exits non-zero on a failure
//
// Ids are made unique per run, so it can be run again against the same server.
const assert = require("node:assert");
const Redis = require("ioredis");
const { createClient } = require("redis");

const port = Number(process.argv[2] || 6409);
const run = `${process.pid}-${Date.now()}`;

(async () => {
  const io = new Redis({ port });
  const key = await io.call("LOCK", `res-${run}`, "PX", 10000);
  assert.match(key, /^[0-9a-f]{32}$/);
  assert.equal(await io.call("RENEW", `res-${run}`, key, "PX", 10000), "OK");
  await assert.rejects(io.call("LOCK", `res-${run}`), /^ReplyError: LOCKED/);
  assert.equal(await io.call("UNLOCK", `res-${run}`, key), "OK");
  const tx = await io.multi().call("LOCK", `{io-${run}}.a`).call("LOCK", `{io-${run}}.b`).exec();
  assert.deepEqual(tx.map(([err, k]) => [err, k.length]), [[null, 32], [null, 32]]);
  io.disconnect();

  const nr = createClient({ socket: { port } });
  await nr.connect();
  const k2 = await nr.sendCommand(["LOCK", `res2-${run}`, "PX", "10000"]);
  assert.equal(await nr.sendCommand(["COMPLETE", `res2-${run}`, k2]), "OK");
  const m = await nr
    .multi()
    .addCommand(["LOCK", `{nr-${run}}.a`])
    .addCommand(["LOCK", `{nr-${run}}.b`])
    .exec();
  assert.deepEqual(m.map((k) => k.length), [32, 32]);
  await nr.quit();
  console.log("ioredis and node-redis: ok");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
