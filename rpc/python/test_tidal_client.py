# SPDX-License-Identifier: Apache-2.0
"""The Python client against `tidal serve` on loopback with stories260K on the CPU (run by ctest:
TIDAL_BINARY names the tidal command, TIDAL_SHARED_DIR the fixtures; PYTHONPATH holds the
generated stubs and rpc/python). Exit code 77 (a ctest skip) when python3-grpcio is missing."""

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

try:
    import grpc
    import tidal_client
    from tidal_client import TidalClient
except ImportError as e:  # pragma: no cover
    print("skipped: %s (launch/install_deps.sh installs python3-grpcio)" % e)
    sys.exit(77)

TIDAL = os.environ.get("TIDAL_BINARY", "tidal")
STORIES = os.path.join(os.environ.get("TIDAL_SHARED_DIR", "../shared"), "models/stories260K/hf")


def tidal_generate(*flags):
    out = subprocess.run([TIDAL, "generate", "--model", STORIES, "--device", "cpu", *flags],
                         capture_output=True, text=True, check=True)
    return out.stdout


@unittest.skipUnless(os.path.isdir(STORIES), "fixture ../shared/models/stories260K is absent")
class TidalClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.err = tempfile.NamedTemporaryFile(mode="w+", suffix=".err")
        cls.server = subprocess.Popen(
            [TIDAL, "serve", "--model", STORIES, "--device", "cpu", "--listen", "127.0.0.1:0",
             "--auth-token", "py-secret"], stderr=cls.err)
        deadline = time.time() + 60
        address = None
        while address is None and time.time() < deadline and cls.server.poll() is None:
            time.sleep(0.02)
            cls.err.seek(0)
            m = re.search(r"serving on (127\.0\.0\.1:\d+)", cls.err.read())
            address = m.group(1) if m else None
        if address is None:
            cls.server.kill()
            raise RuntimeError("tidal serve did not start")
        cls.address = address
        cls.client = TidalClient(address, auth_token="py-secret", timeout=120)
        cls.client.wait_ready()
        cls.anonymous = TidalClient(address, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.anonymous.close()
        cls.server.send_signal(signal.SIGTERM)
        code = cls.server.wait(timeout=60)
        cls.err.close()
        assert code == 0, "tidal serve exited %d" % code

    def test_stream_equals_tidal_generate(self):
        flags = ["--prompt", "Once upon a time", "--temperature", "0.7", "--seed", "11",
                 "--max-new-tokens", "48", "--attention", "tidal", "--budget", "16",
                 "--granularity", "per-kv-head"]
        want_text = tidal_generate(*flags)
        want_ids = [int(x) for x in tidal_generate(*flags, "--print-ids").split()]
        pieces = list(self.client.generate("Once upon a time", temperature=0.7, seed=11,
                                           max_new_tokens=48, attention="tidal", budget=16,
                                           granularity="per-kv-head"))
        self.assertGreater(len(pieces), 1)  # streamed, not one message
        self.assertEqual("".join(p.text for p in pieces) + "\n", want_text)
        self.assertEqual([i for p in pieces for i in p.token_ids], want_ids)
        final = pieces[-1].final
        self.assertEqual(final.usage.generated_tokens, len(want_ids))
        self.assertTrue(any(r.role == "sparse" for r in final.stats.roles))

    def test_command_without_seed_gets_a_drawn_one(self):
        # The command sent seed 0 when --seed was left out; the server draws one per request
        # when none is sent, and the command prints it.
        def seed_of(*flags):
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = tidal_client.main(["--server", self.address, "--auth-token", "py-secret",
                                          "--prompt", "Once", "--max-new-tokens", "4",
                                          "--temperature", "1.0", *flags])
            self.assertEqual(code, 0, err.getvalue())
            m = re.search(r"seed (\d+)", err.getvalue())
            self.assertIsNotNone(m, err.getvalue())
            return int(m.group(1))
        self.assertNotEqual(seed_of(), seed_of())  # equal with odds 2^-64
        self.assertEqual(seed_of("--seed", "0"), 0)
        self.assertEqual(seed_of("--seed", "5"), 5)

    def test_health_info_tokenize_stats(self):
        self.assertEqual(self.anonymous.health(), "SERVING")
        info = self.client.model_info()
        self.assertEqual(info.config.vocab, 512)
        self.assertEqual(list(info.policies), ["full", "tidal", "quest"])
        self.assertEqual(self.client.tokenize("Once upon a time"), [1, 403, 407, 261, 378])
        self.client.complete("Once", max_new_tokens=5, temperature=0)
        stats = self.client.stats()
        self.assertGreaterEqual(stats.requests_finished, 1)
        self.assertEqual(stats.kv_pages_used, 0)

    def test_errors_carry_code_and_field(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.anonymous.complete("Once", max_new_tokens=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            self.client.complete("Once", attention="tidal", budget=1)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("budget must be >= 2", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.client.complete(ids=[1, 9999])
        self.assertIn("ids[1]", e.exception.details())

    def test_cancel_ends_the_stream(self):
        got = []
        stream = self.client.generate("Once upon a time", request_id="py-cancel",
                                      max_new_tokens=480, ignore_eos=True)
        first = next(stream)
        got.extend(first.token_ids)
        self.assertTrue(self.client.cancel("py-cancel"))
        final = None
        for msg in stream:
            got.extend(msg.token_ids)
            if msg.HasField("final"):
                final = msg.final
        self.assertEqual(final.finish, 5)  # FINISH_REASON_CANCELLED
        self.assertLess(len(got), 480)
        self.assertFalse(self.client.cancel("py-cancel"))

    def test_disconnect_frees_the_request(self):
        cancelled = self.client.stats().requests_cancelled
        stream = self.client.generate("Once upon a time", max_new_tokens=480, ignore_eos=True)
        next(stream)
        # Having seen a token, the statistics show the request (never the idle state before it).
        s = self.client.stats()
        self.assertEqual(s.running, 1)
        self.assertGreater(s.kv_pages_used, 0)
        stream.cancel()  # the client goes away
        deadline = time.time() + 30
        while time.time() < deadline:
            s = self.client.stats()
            if s.running == 0 and s.queued == 0 and s.kv_pages_used == 0:
                break
            time.sleep(0.01)
        s = self.client.stats()
        self.assertEqual((s.running, s.kv_pages_used), (0, 0))
        self.assertEqual(s.requests_cancelled, cancelled + 1)

    def test_concurrent_streams(self):
        results = {}

        def run(i):
            results[i] = self.client.complete("Once upon a time", temperature=0.9, seed=i,
                                              max_new_tokens=30, ignore_eos=True).ids

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            alone = self.client.complete("Once upon a time", temperature=0.9, seed=i,
                                         max_new_tokens=30, ignore_eos=True).ids
            self.assertEqual(results[i], alone)


if __name__ == "__main__":
    unittest.main()
