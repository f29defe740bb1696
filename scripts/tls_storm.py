#!/usr/bin/env python3
"""PING latency of plain clients while other clients storm the TLS port with handshakes.

Starts target/release/token-server on 127.0.0.1 (ports chosen by the server) with a throwaway
EC certificate made by `openssl`, then for SECONDS runs STORMERS processes that each connect to
--tls-port, shake hands, send PING, read the reply and close, over and over, while one plain
connection sends PING and times each round trip. Prints the handshakes completed and the PING
p50/p99/max, with the same figures from a quiet run first. The server is killed by its PID at
the end.

Usage: scripts/tls_storm.py [--seconds 4] [--stormers 2] [--shards 2] [--binary PATH]
"""

import argparse
import multiprocessing
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def storm(port, until, counter):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    done = 0
    while time.time() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"PING\r\n")
                    tls.recv(16)
                    done += 1
        except OSError:
            pass
    with counter.get_lock():
        counter.value += done


def ping_latencies(port, seconds):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        start = time.perf_counter()
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(64)
        samples.append(time.perf_counter() - start)
        time.sleep(0.001)
    sock.close()
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000
    return len(samples), pick(0.5), pick(0.99), samples[-1] * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--stormers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--binary", default=os.path.join(root, "target/release/token-server"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tls-storm-") as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
            check=True, capture_output=True)
        server = subprocess.Popen(
            [args.binary, "--port", "0", "--http-port", "0", "--tls-port", "0",
             "--tls-cert-file", cert, "--tls-key-file", key, "--shards", str(args.shards),
             "--dir", os.path.join(tmp, "data")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            ports = {}
            deadline = time.time() + 30
            while "resp" not in ports and time.time() < deadline:
                line = server.stdout.readline()
                for name, port in re.findall(r"listening (resp|tls)=[\d.]+:(\d+)", line):
                    ports[name] = int(port)
            if "resp" not in ports or "tls" not in ports:
                sys.exit("the server did not report its ports")
            n, p50, p99, worst = ping_latencies(ports["resp"], 1.0)
            print(f"quiet:  {n} PINGs  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.1f} ms")
            counter = multiprocessing.Value("q", 0)
            until = time.time() + args.seconds
            workers = [multiprocessing.Process(target=storm, args=(ports["tls"], until, counter))
                       for _ in range(args.stormers)]
            for w in workers:
                w.start()
            n, p50, p99, worst = ping_latencies(ports["resp"], args.seconds)
            for w in workers:
                w.join()
            print(f"storm:  {n} PINGs  p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {worst:.1f} ms  "
                  f"while {counter.value} TLS handshakes completed in {args.seconds:g} s "
                  f"({args.stormers} stormers, {args.shards} shards)")
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    main()
