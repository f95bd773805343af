#!/usr/bin/env bash
# errors tier (issue 18): no native code is ever loaded from the working directory.
# 1. Every ELF executable and shared library of the build tree has a RUNPATH/RPATH of
#    absolute directories only (an empty entry, e.g. CMake's trailing ':' padding, or a
#    relative one is resolved against the working directory; $ORIGIN is fine). Python
#    virtual environments under the build tree (pyenv*) hold other projects' files.
# 2. A libcuda.so.1 planted in the working directory is not loaded when `ffnjit doctor`
#    and libffnjit.so (through ffnjit_context_create) dlopen the driver.
# usage: runpath.sh <build dir> <ffnjit> <libffnjit.so> <C compiler>
build=$1 ffnjit=$(realpath "$2") lib=$(realpath "$3") cc=$4
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

checked=0
while IFS= read -r -d '' f; do
  head -c 4 "$f" 2>/dev/null | grep -q $'^\x7fELF' || continue
  type=$(readelf -h "$f" 2>/dev/null | awk '/Type:/ {print $2}')
  [ "$type" = EXEC ] || [ "$type" = DYN ] || continue
  checked=$((checked + 1))
  paths=$(readelf -d "$f" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]$/\2/p')
  [ -z "$paths" ] && continue
  # awk -F: keeps empty fields: "a:" is "a" and "".
  while IFS= read -r e; do
    e=${e#<} e=${e%>}
    if [ -z "$e" ]; then
      bad "$f: RUNPATH [$paths] has an empty entry (the working directory)"
    elif [[ "$e" != /* && "$e" != '$ORIGIN'* ]]; then
      bad "$f: RUNPATH [$paths] has the relative entry '$e' (resolved against the working directory)"
    fi
  done < <(awk -F: '{ for (i = 1; i <= NF; i++) print "<" $i ">" }' <<<"$paths")
done < <(find "$build" \( -name CMakeFiles -o -name 'pyenv*' \) -prune -o -type f \
           \( -perm -u+x -o -name '*.so' -o -name '*.so.*' \) -print0)
if [ "$checked" -ge 2 ]; then ok; else bad "found only $checked ELF files under $build"; fi
[ "$fail" -eq 0 ] && ok

# A planted driver whose constructor leaves a mark.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/fake.c" <<'C'
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
  FILE* f = fopen("planted-libcuda-ran", "w");
  if (f) fclose(f);
}
C
if ! "$cc" -shared -fPIC -o "$tmp/libcuda.so.1" "$tmp/fake.c"; then
  bad "could not build the planted libcuda.so.1 with $cc"
else
  (cd "$tmp" && env -u LD_LIBRARY_PATH "$ffnjit" doctor >/dev/null 2>&1)
  if [ -e "$tmp/planted-libcuda-ran" ]; then bad "ffnjit doctor loaded ./libcuda.so.1"; else ok; fi
  rm -f "$tmp/planted-libcuda-ran"
  (cd "$tmp" && env -u LD_LIBRARY_PATH python3 -c '
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
ctx = ctypes.c_void_p()
lib.ffnjit_context_create(None, ctypes.byref(ctx))' "$lib" >/dev/null 2>&1)
  if [ -e "$tmp/planted-libcuda-ran" ]; then bad "libffnjit.so (ffnjit_context_create) loaded ./libcuda.so.1"; else ok; fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
