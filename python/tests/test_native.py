"""The native side of the wheel: the ctypes structures match ffnjit.h, one version
everywhere, the bucket table matches the CLI's, the CLI wrapper's environment."""
import os
import re
import shutil
import subprocess
import sys
import unittest

import ffnjit
from ffnjit import _lib, runtime

from util import SOURCE_DIR, TempDirTest, cli

HEADER = os.path.join(SOURCE_DIR, "include", "ffnjit", "ffnjit.h")


class StructLayoutTest(TempDirTest):
    """Compiles a C program that prints sizeof/offsetof of the C API's structs and compares
    them with the ctypes definitions field by field."""

    STRUCTS = {"ffnjit_context_options": _lib.ContextOptions, "ffnjit_context_stats": _lib.ContextStats,
               "ffnjit_layer_desc": _lib.LayerDesc, "ffnjit_layer_stats": _lib.LayerStats}

    def test_layout(self):
        cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler to compile ffnjit.h with")
        if not os.path.isfile(HEADER):
            self.skipTest(f"{HEADER} not found (set FFNJIT_SOURCE_DIR)")
        lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "ffnjit/ffnjit.h"', "int main(void) {"]
        for cname, cls in self.STRUCTS.items():
            lines.append(f'printf("{cname} size %zu\\n", sizeof({cname}));')
            for field, _ in cls._fields_:
                lines.append(f'printf("{cname} {field} %zu\\n", offsetof({cname}, {field}));')
        lines.append('printf("FFNJIT_LAYER_ID_MAX %d\\n", FFNJIT_LAYER_ID_MAX);')
        lines.append("return 0; }")
        src, exe = os.path.join(self.tmp, "layout.c"), os.path.join(self.tmp, "layout")
        with open(src, "w") as f:
            f.write("\n".join(lines))
        subprocess.run([cc, "-I", os.path.join(SOURCE_DIR, "include"), src, "-o", exe], check=True)
        got = dict(line.rsplit(" ", 1) for line in subprocess.run([exe], capture_output=True, text=True,
                                                                   check=True).stdout.splitlines())
        for cname, cls in self.STRUCTS.items():
            self.assertEqual(int(got[f"{cname} size"]), _lib.ctypes.sizeof(cls), cname)
            for field, _ in cls._fields_:
                self.assertEqual(int(got[f"{cname} {field}"]), getattr(cls, field).offset, f"{cname}.{field}")
        self.assertEqual(int(got["FFNJIT_LAYER_ID_MAX"]), _lib.LAYER_ID_MAX)


class VersionTest(unittest.TestCase):
    def test_one_version_everywhere(self):
        with open(HEADER) as f:
            text = f.read()
        header = ".".join(re.search(rf"#define FFNJIT_VERSION_{p} (\d+)", text).group(1)
                          for p in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(ffnjit.__version__, header)          # the wheel's metadata
        self.assertEqual(ffnjit.library_version(), header)    # ffnjit_version() of the bundled library
        self.assertRegex(cli("--version", check=True).stdout, rf"^ffnjit {re.escape(header)} \(generator ")
        self.assertIn(f"ffnjit:        {header} ", cli("doctor", check=True).stdout)
        self.assertTrue(os.path.basename(ffnjit.library_path()).startswith("libffnjit.so.0."), ffnjit.library_path())


class BucketTableTest(unittest.TestCase):
    def test_matches_the_cli_default(self):
        out = cli("tune", "--help", check=True).stdout
        default = re.search(r"--buckets LIST\n[^\n]*\(default: ([^)]*)\)\n", out).group(1)
        self.assertEqual(default, ",".join(name for name, _ in runtime.BUCKETS))
        for name, first in runtime.BUCKETS:
            self.assertEqual(int(name.split("-")[0].rstrip("+")), first)


class CliWrapperTest(unittest.TestCase):
    def test_library_path_has_no_empty_or_relative_entry(self):
        from ffnjit import __main__ as m
        out = m.environment(dict(os.environ, LD_LIBRARY_PATH=":relative/dir::/abs/dir:"))
        entries = out.get("LD_LIBRARY_PATH", "").split(":")
        self.assertIn("/abs/dir", entries)
        for e in entries:
            self.assertTrue(e and os.path.isabs(e), out.get("LD_LIBRARY_PATH"))

    def test_runs_the_bundled_binary(self):
        p = subprocess.run([sys.executable, "-m", "ffnjit", "frobnicate"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", p.stderr)


if __name__ == "__main__":
    unittest.main()
