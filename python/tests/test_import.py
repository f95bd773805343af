"""The installed package: what `import ffnjit` gives with and without PyTorch."""
import importlib.util
import os
import unittest

import ffnjit

from util import have_torch


class ImportTest(unittest.TestCase):
    def test_bundled_library(self):
        # The wheel's own copy, unless a developer points FFNJIT_LIBRARY elsewhere.
        if "FFNJIT_LIBRARY" not in os.environ:
            self.assertTrue(ffnjit.library_path().startswith(os.path.dirname(ffnjit.__file__)))
        self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(ffnjit.__file__), "bin", "ffnjit")))

    def test_without_torch_the_torch_api_says_what_is_missing(self):
        if have_torch():
            self.assertTrue(callable(ffnjit.patch))
            import torch
            self.assertTrue(hasattr(torch.ops.ffnjit, "ffn"))
            return
        self.assertIsNone(importlib.util.find_spec("torch"))
        with self.assertRaises(ImportError) as e:
            ffnjit.patch  # noqa: B018
        self.assertIn("pip install torch", str(e.exception))


if __name__ == "__main__":
    unittest.main()
