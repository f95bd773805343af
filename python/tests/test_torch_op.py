"""torch.ops.ffnjit.ffn without a GPU: its schema, the fake (meta) implementation's
shapes, and tracing by make_fx and torch.compile(fullgraph=True)."""
import unittest

from util import needs_torch


@needs_torch
class FakeImplTest(unittest.TestCase):
    def setUp(self):
        import torch

        import ffnjit  # noqa: F401  (registers the op)
        self.torch = torch

    def test_schema(self):
        op = self.torch.ops.ffnjit.ffn.default
        self.assertEqual(str(op._schema), "ffnjit::ffn(Tensor x, SymInt layer) -> Tensor")

    def test_meta_shapes(self):
        torch = self.torch
        for shape in [(1, 64), (7, 64), (2, 5, 64), (0, 64), (3, 1, 4, 128)]:
            with self.subTest(shape=shape):
                x = torch.empty(shape, dtype=torch.bfloat16, device="meta")
                y = torch.ops.ffnjit.ffn(x, 12345)
                self.assertEqual(tuple(y.shape), shape)
                self.assertEqual(y.dtype, torch.bfloat16)
                self.assertEqual(y.device.type, "meta")
                self.assertTrue(y.is_contiguous())
        # A non-contiguous input gives a contiguous output, as the real op's does.
        x = torch.empty(64, 6, dtype=torch.bfloat16, device="meta").t()
        self.assertTrue(torch.ops.ffnjit.ffn(x, 1).is_contiguous())

    def test_fake_tensor_mode_on_cuda_tensors(self):
        torch = self.torch
        from torch._subclasses.fake_tensor import FakeTensorMode
        with FakeTensorMode():
            try:
                x = torch.empty(4, 3, 64, dtype=torch.bfloat16, device="cuda")
            except (RuntimeError, AssertionError) as e:  # some builds need a driver even for fake CUDA tensors
                self.skipTest(f"fake CUDA tensors unavailable without a GPU: {e}")
            y = torch.ops.ffnjit.ffn(x, 7)
            self.assertEqual((tuple(y.shape), y.device.type), ((4, 3, 64), "cuda"))

    def test_make_fx_traces_the_op(self):
        torch = self.torch
        from torch.fx.experimental.proxy_tensor import make_fx

        def f(x):
            return torch.ops.ffnjit.ffn(x * 2, 3) + 1

        gm = make_fx(f, tracing_mode="fake")(torch.zeros(5, 64, dtype=torch.bfloat16))
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        self.assertIn(torch.ops.ffnjit.ffn.default, targets)
        node = next(n for n in gm.graph.nodes if n.target == torch.ops.ffnjit.ffn.default)
        self.assertEqual(node.args[1], 3)  # the layer id is a constant of the graph
        self.assertEqual(tuple(node.meta["val"].shape), (5, 64))

    def test_torch_compile_fullgraph_traces_the_op(self):
        torch = self.torch
        graphs = []

        def backend(gm, example_inputs):
            graphs.append(gm)
            # The real op runs only on CUDA; the GPU test runs compiled models. Here the
            # graph is what is checked, and the compiled function returns zeros.
            return lambda *args: [torch.zeros(5, 64, dtype=torch.bfloat16)]

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.handle = 42

            def forward(self, x):
                return torch.ops.ffnjit.ffn(x, self.handle)

        torch._dynamo.reset()
        compiled = torch.compile(M(), backend=backend, fullgraph=True, dynamic=False)
        compiled(torch.ones(5, 64, dtype=torch.bfloat16))
        self.assertEqual(len(graphs), 1)
        calls = [n for n in graphs[0].graph.nodes if n.op == "call_function"]
        # Dynamo records the op packet, not its overload.
        self.assertEqual(len(calls), 1)
        self.assertIn(calls[0].target, (torch.ops.ffnjit.ffn, torch.ops.ffnjit.ffn.default))
        self.assertEqual(calls[0].args[1], 42)  # the module's handle, baked in as a constant


if __name__ == "__main__":
    unittest.main()
