"""Layer ids and checkpoint fingerprints (docs/identity.md), without PyTorch."""
import os
import re
import shutil
import unittest

import ffnjit
from ffnjit import identity

from util import TempDirTest, cli, tiny_checkpoint

FP = "0123456789abcdef" * 4


class LayerIdTest(unittest.TestCase):
    def test_format(self):
        self.assertEqual(ffnjit.layer_id(FP, 0), FP + ":0")
        self.assertEqual(ffnjit.layer_id(FP, 17), FP + ":17")
        self.assertEqual(ffnjit.layer_id(FP, 3, 2, 1), FP + ":3:tp2.1")
        self.assertEqual(ffnjit.layer_id(FP, 3, 1, 0), FP + ":3")  # tp size 1 is the whole layer: no suffix
        self.assertEqual(ffnjit.layer_id(FP, 31, 64, 63), FP + ":31:tp64.63")

    def test_format_refuses(self):
        for args in [(FP.upper(), 0), (FP[:63], 0), (FP, -1), (FP, 1 << 21), (FP, 0, 0, 0), (FP, 0, 65, 0),
                     (FP, 0, 2, 2), (FP, 0, 2, -1), (FP, True)]:
            with self.subTest(args=args), self.assertRaises(ValueError):
                ffnjit.layer_id(*args)

    def test_parse_round_trip(self):
        for idx, size, rank in [(0, 1, 0), (9, 1, 0), (10, 1, 0), (1048576, 1, 0), (5, 2, 0), (5, 8, 7)]:
            s = ffnjit.layer_id(FP, idx, size, rank)
            self.assertEqual(ffnjit.parse_layer_id(s), (FP, idx, size, rank))

    def test_parse_refuses_with_the_runtime_wording(self):
        # The messages of runtime/identity.cpp parse_layer_id, case by case.
        cases = {
            FP: "does not start with a 64-digit lower-case hex fingerprint",
            FP.upper() + ":0": "does not start with a 64-digit lower-case hex fingerprint",
            FP + ":": "does not start with a 64-digit lower-case hex fingerprint and ':'",  # < 66 bytes
            FP + ":01": "layer index is not a decimal number without leading zeros",
            FP + ":x": "layer index is not a decimal number without leading zeros",
            FP + ":1048577": "layer index is not a decimal number without leading zeros",
            FP + ":3x": "trailing text after the layer index",
            FP + ":3:tp1.0": "tensor-parallel size must be 2..64",
            FP + ":3:tp65.0": "tensor-parallel size must be 2..64",
            FP + ":3:tp02.0": "tensor-parallel size must be 2..64",
            FP + ":3:tp2": "tensor-parallel size must be 2..64",
            FP + ":3:tp2.2": "tensor-parallel rank must be 0..1",
            FP + ":3:tp2.01": "tensor-parallel rank must be 0..1",
            FP + ":3:tp2.1x": "tensor-parallel rank must be 0..1",
            FP + ":" + "1" * 300: "more than 255",
        }
        for text, want in cases.items():
            with self.subTest(text=text[64:]):
                with self.assertRaises(ValueError) as e:
                    ffnjit.parse_layer_id(text)
                self.assertIn(want, str(e.exception))
                self.assertIn("a layer_id is <64-hex fingerprint>:<layer index>", str(e.exception))


class FingerprintTest(TempDirTest):
    def test_matches_the_cli_and_ignores_the_path(self):
        ckpt = os.path.join(self.tmp, "ckpt")
        cli("demo-checkpoint", ckpt, check=True)
        fp = ffnjit.checkpoint_fingerprint(ckpt)
        self.assertTrue(identity.is_fingerprint(fp), fp)
        out = cli("profile", ckpt, "--inputs", os.path.join(ckpt, "inputs.safetensors"), "--cpu", check=True).stdout
        printed = re.search(r"fingerprint ([0-9a-f]{12})", out).group(1)
        self.assertEqual(fp[:12], printed)
        moved = os.path.join(self.tmp, "elsewhere", "copy")
        shutil.copytree(ckpt, moved)
        self.assertEqual(ffnjit.checkpoint_fingerprint(moved), fp)

    def test_changes_with_the_weights(self):
        a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
        tiny_checkpoint(a, config_extra={"hidden_act": "relu"})
        tiny_checkpoint(b, config_extra={"hidden_act": "relu"}, d_ff=136)
        self.assertNotEqual(ffnjit.checkpoint_fingerprint(a), ffnjit.checkpoint_fingerprint(b))

    def test_not_a_checkpoint(self):
        with self.assertRaises(ffnjit.FfnjitError) as e:
            ffnjit.checkpoint_fingerprint(os.path.join(self.tmp, "missing"))
        self.assertIn("not a directory", str(e.exception))
        self.assertEqual(e.exception.status_name, "FFNJIT_STATUS_INVALID_ARGUMENT")


if __name__ == "__main__":
    unittest.main()
