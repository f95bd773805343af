"""Which activations ffnjit.patch serves, and that its refusals are the CLI's, word for word."""
import os
import unittest

import ffnjit
from ffnjit import activation

from util import TempDirTest, cli_error, tiny_checkpoint


class FromConfigTest(unittest.TestCase):
    def test_relu_family(self):
        a = activation.from_config({"model_type": "llama", "hidden_act": "relu"}, "llama", True)
        self.assertEqual((a.name, a.code, a.threshold), ("relu", 0, 0.0))
        a = activation.from_config({"model_type": "llama", "hidden_act": "relu2"}, "llama", True)
        self.assertEqual((a.name, a.code), ("relu2", 1))
        a = activation.from_config({"hidden_act": "fatrelu", "hidden_act_param": 0.25}, "llama", True)
        self.assertEqual((a.name, a.code, a.threshold), ("fatrelu", 2, 0.25))
        # OPT's default activation (no key) is ReLU, as in transformers and the CLI.
        self.assertEqual(activation.from_config({"model_type": "opt"}, "opt", False).name, "relu")

    def test_sparselm_is_relu_whatever_the_config_says(self):
        a = activation.from_config({"model_type": "llama_sparse_relu", "hidden_act": "silu"}, "llama", True)
        self.assertEqual(a.name, "relu")
        self.assertIn("the FFN gate is ReLU although hidden_act says 'silu'", a.notes[0])

    def test_fatrelu_needs_its_threshold(self):
        with self.assertRaises(ffnjit.UnsupportedModelError) as e:
            activation.from_config({"hidden_act": "fatrelu"}, "llama", True)
        self.assertIn("threshold", str(e.exception))

    def test_refuses_gelu_and_silu(self):
        with self.assertRaises(ffnjit.UnsupportedModelError) as e:
            activation.from_config({"model_type": "llama"}, "llama", True)  # Llama's default: silu
        self.assertIn("model_type 'llama' uses hidden_act 'silu', not ReLU", str(e.exception))
        with self.assertRaises(ffnjit.UnsupportedModelError):
            activation.from_config({"model_type": "opt", "activation_function": "gelu"}, "opt", False)


class SameMessageAsTheCliTest(TempDirTest):
    """For each refused config, the Python message equals what `ffnjit profile` prints
    (after '<checkpoint>: '), and ffnjit.checkpoint_fingerprint raises the CLI's text."""

    CASES = [
        ("llama", {"model_type": "llama", "hidden_act": "silu"}, True),
        ("llama", {"model_type": "mistral"}, True),                   # no key: Llama-family default silu
        ("llama", {"hidden_act": "gelu_pytorch_tanh"}, True),         # no model_type: "this model"
        ("opt", {"model_type": "opt", "activation_function": "gelu"}, False),
        ("llama", {"model_type": "qwen2", "hidden_act": None, "hidden_activation": "gelu"}, True),
    ]

    def test_messages(self):
        for n, (naming, extra, gated) in enumerate(self.CASES):
            with self.subTest(config=extra):
                d = os.path.join(self.tmp, f"ckpt{n}")
                config = tiny_checkpoint(d, naming=naming, config_extra=extra)
                with self.assertRaises(ffnjit.UnsupportedModelError) as e:
                    activation.from_config(config, naming, gated)
                inputs = os.path.join(self.tmp, "none.safetensors")
                want = cli_error("profile", d, "--inputs", inputs, "--cpu")
                self.assertEqual(f"{d}: {e.exception}", want)
                with self.assertRaises(ffnjit.FfnjitError) as f:
                    ffnjit.checkpoint_fingerprint(d)
                self.assertEqual(f.exception.message, want)


if __name__ == "__main__":
    unittest.main()
