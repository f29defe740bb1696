#!/usr/bin/env python3
"""Run a job exactly once with token-server and redis-py: the worker pattern of
docs/RUN_ONCE.md as a helper you can copy.

run_once(id, work):
1. LOCK id PX lease WAIT wait KEY k WITHFENCE: take the id with a lease under this attempt's
   own random key k; if someone holds it, queue for it; if it is completed, return its stored
   result instead of working.
2. Run work(fence) while a thread RENEWs the lease every third of it.
3. COMPLETE id key RESULT r on success; UNLOCK id key on failure, so a retry can run.

Every command is retried when its reply is lost (the connection drops) or refused
(-TRYAGAIN, -IOERR): COMPLETE, RENEW and UNLOCK are idempotent for their key, and a LOCK
sent again with the same KEY while the id is held under it gets the same key and fence. So a
job runs once even when the network or the server misbehaves (try it against
`token-server --chaos-rate 0.3`).

    pip install redis
    python3 examples/run_once.py redis://127.0.0.1:6409/ 5
"""

import secrets
import sys
import threading
import time

import redis

RETRY_CODES = ("TRYAGAIN", "IOERR")


class WorkFailed(Exception):
    """The work failed; the id was unlocked so a later call can retry it."""


class LeaseLost(Exception):
    """The lease ran out while working: someone else may be doing the job now."""


def code(error):
    """The error code of a server error: LOCKED, COMPLETED, TRYAGAIN, ..."""
    if isinstance(error, redis.exceptions.TryAgainError):
        return "TRYAGAIN"  # redis-py strips this code from the message
    return str(error).split(" ", 1)[0]


class Worker:
    def __init__(self, url, lease_ms=30_000, wait_ms=10_000, patience_s=120.0):
        self.url = url
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.patience_s = patience_s
        self.local = threading.local()

    def _client(self):
        if getattr(self.local, "client", None) is None:
            self.local.client = redis.Redis.from_url(
                self.url, socket_timeout=(self.wait_ms + 5_000) / 1000
            )
        return self.local.client

    def call(self, *args):
        """Sends a command, retrying while its reply is lost or the server asks for a retry.
        Other server errors are raised."""
        deadline = time.monotonic() + self.patience_s
        pause = 0.005
        while True:
            try:
                return self._client().execute_command(*args)
            except (redis.ConnectionError, redis.TimeoutError):
                self.local.client = None  # the reply was lost: a fresh connection
            except redis.ResponseError as e:
                if code(e) not in RETRY_CODES:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args[0]} got no usable reply")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def result(self, activity_id):
        fields = self.call("STATUS", activity_id)
        if isinstance(fields, list):  # RESP2: alternating names and values
            fields = dict(zip(fields[::2], fields[1::2]))
        result = fields.get(b"result")
        return result.decode() if result is not None else None

    def run_once(self, activity_id, work):
        """Runs work(fence) once for activity_id. Returns ("done", result) when this call did
        the work, ("already done", result) when it had been done before."""
        started = time.monotonic()
        mine = secrets.token_hex(16)  # this attempt's key: a lost LOCK reply can be asked again
        while True:
            try:
                key, fence = self.call(
                    "LOCK", activity_id, "PX", self.lease_ms, "WAIT", self.wait_ms,
                    "KEY", mine, "WITHFENCE",
                )
                break
            except redis.ResponseError as e:
                if code(e) == "COMPLETED":
                    return ("already done", self.result(activity_id))
                # LOCKED: held by someone else (the wait ran out); queue again.
                if code(e) != "LOCKED" or time.monotonic() - started > self.patience_s:
                    raise

        done = threading.Event()
        lost = threading.Event()

        def renew():
            renewer = Worker(self.url, self.lease_ms, self.wait_ms, self.patience_s)
            while not done.wait(self.lease_ms / 3000):
                try:
                    renewer.call("RENEW", activity_id, key, "PX", self.lease_ms)
                except redis.ResponseError:
                    lost.set()  # NOTLOCKED or BADKEY: stop working
                    return

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            outcome = work(fence)
        except Exception as e:
            done.set()
            try:
                self.call("UNLOCK", activity_id, key)
            except redis.ResponseError:
                pass  # NOTLOCKED or BADKEY after a lost reply: it was unlocked already
            raise WorkFailed(str(e)) from e
        finally:
            done.set()
            renewer.join()
        if lost.is_set():
            raise LeaseLost(activity_id)
        try:
            self.call("COMPLETE", activity_id, key, "RESULT", outcome)
        except redis.ResponseError as e:
            if code(e) == "COMPLETED":
                return ("already done", self.result(activity_id))
            if code(e) in ("NOTLOCKED", "BADKEY"):
                raise LeaseLost(activity_id) from e
            raise
        return ("done", outcome)


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6409/"
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    # These jobs take no time, so a short lease will do. Real jobs want a lease well above
    # their running time (the default, 30 s).
    worker = Worker(url, lease_ms=2_000, wait_ms=5_000)
    for run in (1, 2):
        for n in range(jobs):
            job = f"python-job-{n}"
            status, result = worker.run_once(job, lambda fence, n=n: f"sent email {n} (fence {fence})")
            print(f"pass {run} {job}: {status}: {result}")


if __name__ == "__main__":
    main()
