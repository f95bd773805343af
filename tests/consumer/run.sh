#!/usr/bin/env bash
# The installed tree, as a consumer sees it (issue 17 item 4): `cmake --install` into a
# temporary prefix; a CMake project with find_package(ffnjit) + ffnjit::ffnjit builds
# and runs; pkg-config --cflags --libs builds the same program; every version agrees
# (header, ffnjit_version(), CMake package, pkg-config, `ffnjit --version`); nothing of
# the build (static libraries, nlohmann_json, SQLite, CUDA) leaks into the package files;
# the prefix still works after it is moved.
# usage: run.sh <build dir> <source dir> <cmake> <C compiler>
build=$1 src=$2 cmake=$3 cc=$4
pass=0 fail=0
check() {  # check <description> <command...>
  local what=$1; shift
  if "$@" >"$tmp/out" 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; sed 's/^/    /' "$tmp/out" | tail -20; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

check "cmake --install into a prefix" "$cmake" --install "$build" --prefix "$prefix"
libdir=$(dirname "$(find "$prefix" -name 'ffnjitConfig.cmake' | head -1)")/../..
libdir=$(realpath "$libdir")
check "libffnjit.so, its soname link and no static library are installed" bash -c '
  ls "$1"/libffnjit.so "$1"/libffnjit.so.0.* >/dev/null && ! find "$2" -name "*.a" | grep -q . &&
  soname=$(readelf -d "$1"/libffnjit.so | sed -n "s/.*SONAME.*\[\(.*\)\]/\1/p") && [ -e "$1/$soname" ] &&
  [[ "$soname" == libffnjit.so.0.* ]]' _ "$libdir" "$prefix"
check "the CMake package names no build-only dependency" bash -c '
  ! grep -il -e nlohmann -e sqlite -e cudatoolkit -e "CUDA::" -e ffnjit_runtime -e ffnjit_build_flags -e find_dependency \
    "$1"/cmake/ffnjit/*.cmake' _ "$libdir"
check "find_package(ffnjit) + ffnjit::ffnjit configures" "$cmake" -S "$src/tests/consumer" -B "$tmp/app" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
check "the consumer builds" "$cmake" --build "$tmp/app"
check "the consumer runs" "$tmp/app/app"
cmake_line=$(head -1 "$tmp/out")
check "the C++ consumer (ffnjit.hpp) runs" "$tmp/app/app_cpp"

export PKG_CONFIG_PATH=$libdir/pkgconfig
check "pkg-config --cflags --libs ffnjit" pkg-config --cflags --libs ffnjit
check "a program builds with pkg-config's flags" bash -c \
  '"$1" -o "$2/app_pc" "$3/tests/consumer/app.c" $(pkg-config --cflags --libs ffnjit) -Wl,-rpath,"$4"' \
  _ "$cc" "$tmp" "$src" "$libdir"
check "and runs" "$tmp/app_pc"

version=$(sed -n 's/^header \([0-9.]*\) .*/\1/p' <<<"$cmake_line")
check "header, library and CMake package versions agree ($cmake_line)" \
  bash -c '[[ "$1" =~ ^header\ ([0-9.]+)\ library\ ([0-9.]+)\ package\ ([0-9.]+)$ ]] &&
           [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[3]}" ]' _ "$cmake_line"
check "pkg-config --modversion is $version" bash -c '[ "$(pkg-config --modversion ffnjit)" = "$1" ]' _ "$version"
check "ffnjit --version is $version" bash -c '"$1"/bin/ffnjit --version | grep -qx "ffnjit $2 (generator .*)"' _ "$prefix" "$version"
check "the soname carries the version's major.minor" bash -c '
  [ "$(readelf -d "$1"/libffnjit.so | sed -n "s/.*SONAME.*\[\(.*\)\]/\1/p")" = "libffnjit.so.${2%.*}" ]' _ "$libdir" "$version"

# A moved prefix: the package files are relative to where they lie.
mv "$prefix" "$tmp/moved"
moved_libdir=${libdir/$prefix/$tmp/moved}
check "pkg-config follows a moved prefix" bash -c \
  'PKG_CONFIG_PATH="$1/pkgconfig" pkg-config --variable=libdir ffnjit | xargs realpath | grep -qx "$(realpath "$1")"' _ "$moved_libdir"
check "find_package follows a moved prefix" "$cmake" -S "$src/tests/consumer" -B "$tmp/app2" -DCMAKE_PREFIX_PATH="$tmp/moved"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
