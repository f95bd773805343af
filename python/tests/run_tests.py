"""Runs the package's CPU tests (unittest, no pytest needed) and ends with the line
'N passed, N failed, N skipped'. Exit status 1 on any failure or error.

usage: python run_tests.py [--no-torch | --torch] [module ...]
--no-torch: only the modules that need neither PyTorch nor transformers;
--torch: only the others (and test_import, which checks both cases)."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
NO_TORCH = ["test_identity", "test_activation", "test_native", "test_import"]
TORCH = ["test_torch_op", "test_hf", "test_import"]


def main(argv):
    sys.path.insert(0, HERE)
    names = [a for a in argv if not a.startswith("--")]
    if "--no-torch" in argv:
        names = names or NO_TORCH
    elif "--torch" in argv:
        names = names or TORCH
    loader = unittest.TestLoader()
    suite = (loader.loadTestsFromNames(names) if names
             else loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE))
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    for test, reason in result.skipped:
        print(f"skipped: {test.id()}: {reason}")
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
