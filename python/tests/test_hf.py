"""ffnjit with transformers models on the CPU: FFN discovery, capture_inputs and its file
read by the C++ reader (`ffnjit profile`), refusals (the CLI's messages), layer ids from
the checkpoint (tensor-parallel too), the module swap, and the patch report."""
import json
import os
import unittest

from util import TempDirTest, cli, cli_error, needs_transformers


@needs_transformers
class HfTest(TempDirTest):
    def setUp(self):
        super().setUp()
        import torch

        import ffnjit
        import hf_models
        self.torch, self.ffnjit, self.hf = torch, ffnjit, hf_models

    def test_find_ffns(self):
        want = {"llama": ("model.layers.{}.mlp", "gated"), "mistral": ("model.layers.{}.mlp", "gated"),
                "qwen2": ("model.layers.{}.mlp", "gated"), "opt": ("model.decoder.layers.{}", "opt")}
        for family, (name, kind) in want.items():
            with self.subTest(family=family):
                ffns = self.ffnjit.find_ffns(self.hf.model(family, layers=3))
                self.assertEqual([(f.index, f.name, f.kind) for f in ffns],
                                 [(i, name.format(i), kind) for i in range(3)])
                self.assertEqual(ffns[0].d_ff, 128)

    def test_capture_round_trip_through_the_cli(self):
        torch = self.torch
        for family in self.hf.FAMILIES:
            with self.subTest(family=family):
                model = self.hf.model(family)
                ckpt, inputs = os.path.join(self.tmp, family), os.path.join(self.tmp, family + ".safetensors")
                model.save_pretrained(ckpt)
                # What the FFNs see, recorded independently of capture_inputs.
                ffns = self.ffnjit.find_ffns(model)
                seen = {f.index: [] for f in ffns}
                hooks = [f.input_module.register_forward_pre_hook(
                    lambda m, a, i=f.index: seen[i].append(a[0].reshape(-1, a[0].shape[-1]))) for f in ffns]
                batches = self.hf.batches()
                with torch.no_grad():
                    model(**batches[0])
                    model(batches[1])
                for h in hooks:
                    h.remove()
                counts = self.ffnjit.capture_inputs(model, batches, inputs)
                self.assertEqual(counts, {f.index: self.hf.CAPTURED_ROWS for f in ffns})
                from safetensors.torch import load_file
                got = load_file(inputs)
                self.assertEqual(sorted(got), [f"layers.{f.index}.input" for f in ffns])
                for f in ffns:
                    t = got[f"layers.{f.index}.input"]
                    self.assertEqual((t.dtype, tuple(t.shape)), (torch.bfloat16, (self.hf.CAPTURED_ROWS, 64)))
                    a, b = seen[f.index]
                    keep = batches[0]["attention_mask"].reshape(-1) != 0  # the padded row is left out
                    self.assertTrue(torch.equal(t, torch.cat([a[keep], b]).to(torch.bfloat16)))
                # The C++ reader: ffnjit profile reads the file against the saved checkpoint.
                out = os.path.join(self.tmp, family + ".profile.json")
                p = cli("profile", ckpt, "--inputs", inputs, "--cpu", "-o", out)
                self.assertEqual(p.returncode, 0, p.stderr)
                with open(out) as fh:
                    prof = json.load(fh)
                self.assertEqual([(L["index"], L["tokens"], L["d_ff"]) for L in prof["layers"]],
                                 [(f.index, self.hf.CAPTURED_ROWS, 128) for f in ffns])
                self.assertEqual(prof["checkpoint"]["fingerprint"], self.ffnjit.checkpoint_fingerprint(ckpt))

    def test_capture_max_rows_and_hooks_removed(self):
        model = self.hf.model("llama")
        path = os.path.join(self.tmp, "x.safetensors")
        counts = self.ffnjit.capture_inputs(model, self.hf.batches(), path, max_rows=10)
        self.assertEqual(set(counts.values()), {10})
        for f in self.ffnjit.find_ffns(model):
            self.assertEqual(len(f.input_module._forward_pre_hooks), 0)

    def test_refuses_non_relu_with_the_cli_message(self):
        for family, act in (("llama", "silu"), ("qwen2", "gelu"), ("opt", "gelu")):
            with self.subTest(family=family):
                model = self.hf.model(family, hidden_act=act)
                ckpt = os.path.join(self.tmp, family + "-" + act)
                model.save_pretrained(ckpt)
                want = cli_error("profile", ckpt, "--inputs", os.path.join(self.tmp, "none"), "--cpu")
                before = {n: type(m) for n, m in model.named_modules()}
                with self.assertRaises(self.ffnjit.UnsupportedModelError) as e:
                    self.ffnjit.patch(model, checkpoint=False)
                self.assertEqual(f"{ckpt}: {e.exception}", want)
                with self.assertRaises(self.ffnjit.UnsupportedModelError) as e:  # the library's own refusal
                    self.ffnjit.patch(model, checkpoint=ckpt)
                self.assertEqual(str(e.exception), want)
                self.assertEqual({n: type(m) for n, m in model.named_modules()}, before)

    def test_patch_fails_whole_without_a_gpu_weights(self):
        model = self.hf.model("llama")
        before = {n: type(m) for n, m in model.named_modules()}
        with self.assertRaises(ValueError) as e:
            self.ffnjit.patch(model, checkpoint=False)
        self.assertIn("must be on one CUDA device", str(e.exception))
        self.assertEqual({n: type(m) for n, m in model.named_modules()}, before)

    def test_checkpoint_dir(self):
        from ffnjit.patching import checkpoint_dir
        import transformers as tf
        model = self.hf.model("llama")
        with self.assertRaises(FileNotFoundError) as e:
            checkpoint_dir(model, None)
        self.assertIn("checkpoint=False", str(e.exception))
        ckpt = os.path.join(self.tmp, "saved")
        model.save_pretrained(ckpt)
        loaded = tf.AutoModelForCausalLM.from_pretrained(ckpt)
        self.assertEqual(checkpoint_dir(loaded, None), ckpt)
        self.assertIsNone(checkpoint_dir(loaded, False))
        self.assertEqual(checkpoint_dir(model, ckpt), ckpt)
        with self.assertRaises(FileNotFoundError):
            checkpoint_dir(model, os.path.join(self.tmp, "nope"))

    def test_tensor_parallel_ids(self):
        from ffnjit.patching import tensor_parallel_of
        model = self.hf.model("llama", d_ff=64)  # each rank's shard: 64 of 128 rows
        ffns = self.ffnjit.find_ffns(model)
        self.assertEqual(tensor_parallel_of(ffns[0], (2, 1), 128), (2, 1, None))
        self.assertEqual(tensor_parallel_of(ffns[0], None, 128), (1, 0, None))  # no distributed run, no DTensor
        with self.assertRaises(ValueError) as e:
            tensor_parallel_of(ffns[0], (4, 1), 128)
        self.assertIn("not the config's d_ff=128 split over 4 ranks", str(e.exception))
        fp = "ab" * 32
        self.assertEqual(self.ffnjit.layer_id(fp, ffns[1].index, 2, 1), fp + ":1:tp2.1")

    def test_swap_keeps_the_model_function(self):
        """The module swap alone (a stand-in computing the original FFN in place of
        SparseFFN): logits are bit-identical, for the gated MLP and OPT's fc1/fc2."""
        torch = self.torch
        from ffnjit.patching import _swap

        class StandIn(torch.nn.Module):
            def __init__(self, f):
                super().__init__()
                m = f.module
                self.parts = (m.gate_proj, m.up_proj, m.down_proj, m.act_fn) if f.kind == "gated" else \
                    (m.fc1, m.fc2, m.activation_fn)
                self.kind = f.kind

            def forward(self, x):
                if self.kind == "gated":
                    g, u, d, a = self.parts
                    return d(a(g(x)) * u(x))
                f1, f2, a = self.parts
                return f2(a(f1(x)))

        for family in self.hf.FAMILIES:
            with self.subTest(family=family):
                model = self.hf.model(family)
                ids = self.hf.batches()[1]
                with torch.no_grad():
                    want = model(ids).logits
                    for f in self.ffnjit.find_ffns(model):
                        _swap(model, f, StandIn(f))
                    got = model(ids).logits
                self.assertTrue(torch.equal(got, want))
                kinds = {type(m).__name__ for m in model.modules()}
                self.assertIn("StandIn", kinds)

    def test_report(self):
        from ffnjit.patching import LayerReport, PatchReport
        names = [b for b, _ in self.ffnjit.BUCKETS]
        r = PatchReport(fingerprint="ab" * 32, activation="relu")
        r.layers = [LayerReport(i, f"model.layers.{i}.mlp", f"{'ab' * 32}:{i}", 64, 128, True,
                                {b: "tuned" for b in names}) for i in range(2)]
        self.assertTrue(r.all_tuned)
        self.assertEqual(r.counts(), {"tuned": 16, "shape": 0, "default": 0})
        r.layers[1].buckets["4097+"] = "default"
        self.assertFalse(r.all_tuned)
        self.assertEqual(r.counts(), {"tuned": 15, "shape": 0, "default": 1})
        text = str(r)
        self.assertIn("2 FFN layers patched (relu, checkpoint abababababab); buckets: 15 tuned, 0 shape, 1 default",
                      text)
        self.assertIn("4097+", text.splitlines()[1])
        self.assertFalse(PatchReport().all_tuned)


if __name__ == "__main__":
    unittest.main()
