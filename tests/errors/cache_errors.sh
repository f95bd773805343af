#!/usr/bin/env bash
# errors tier, cache: each bad cache file (not SQLite, truncated, from a newer ffnjit,
# foreign SQLite, read-only location) gives one line on stderr naming the fix, exits
# non-zero, and leaves the user's file byte for byte as it was.
#   cache_errors.sh FFNJIT CACHE_WRITER
ffnjit=$(realpath "$1") writer=$(realpath "$2")
pass=0 fail=0
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cd "$work" || exit 1

# As root, permissions do not stop writes: run the read-only cases as nobody.
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  if command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
    as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    chmod 755 "$work"
  else
    as_user=(skip)
  fi
fi

check() {  # check "<message substring>" <command...>: rc != 0, one stderr line holding it
  local want=$1; shift
  local err rc lines
  err=$("$@" 2>&1 >/dev/null); rc=$?
  lines=$(printf '%s' "$err" | grep -c '')
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && [[ "$err" == *"$want"* ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $* -> rc=$rc, $lines line(s): $err"
    echo "      wanted: $want"
  fi
}
untouched() {  # untouched FILE "<message>" <ffnjit args...>: as check, and FILE keeps its bytes
  local file=$1 want=$2; shift 2
  local before after
  before=$(sha256sum "$file")
  check "$want" "$ffnjit" "$@"
  after=$(sha256sum "$file")
  if [ "$before" != "$after" ]; then
    fail=$((fail + 1))
    echo "FAIL: ffnjit $* changed $file"
  fi
}

# A real cache to start from: 64 records, a few spanning many pages.
"$writer" good.db 1 0 64 || { echo "FAIL: cache_writer could not fill good.db"; exit 1; }
"$ffnjit" cache export --cache good.db shipped.ffnjit >/dev/null || { echo "FAIL: export"; exit 1; }

# Not SQLite at all.
printf 'my notes, not a database\n' > notes.db
for sub in ls verify "export out.x" "import shipped.ffnjit" "merge good.db" gc; do
  # shellcheck disable=SC2086
  untouched notes.db "notes.db is not an ffnjit cache (not a SQLite database); ffnjit leaves it untouched: pass --cache with another path" cache $sub --cache notes.db
done
untouched notes.db "is not an ffnjit cache (not a SQLite database)" cache import notes.db --cache good.db
untouched notes.db "is not an ffnjit cache (not a SQLite database)" cache merge notes.db --cache good.db
FFNJIT_CACHE=notes.db untouched notes.db "notes.db is not an ffnjit cache" cache ls

# Truncated: inside the header, and a real cache cut to a third.
head -c 60 good.db > header.db
untouched header.db "header.db is truncated (60 bytes, shorter than a SQLite header); ffnjit leaves it untouched: move it away or pass another --cache" cache ls --cache header.db
size=$(stat -c %s good.db)
head -c $((size / 3)) good.db > cut.db
untouched cut.db "cut.db is damaged or truncated (SQLite: database disk image is malformed)" cache ls --cache cut.db
untouched cut.db "cut.db is damaged or truncated" cache import shipped.ffnjit --cache cut.db
untouched cut.db "cut.db is damaged or truncated" cache merge cut.db --cache good.db

# From a newer ffnjit (schema v9).
sqlite3 newer.db "PRAGMA application_id = 1179012682; PRAGMA user_version = 9; CREATE TABLE binaries (k); CREATE TABLE tuning (k);"
newer_msg="newer.db was created by a newer ffnjit (schema v9, this build reads up to v2); upgrade ffnjit or use another --cache"
untouched newer.db "$newer_msg" cache ls --cache newer.db
untouched newer.db "$newer_msg" cache import shipped.ffnjit --cache newer.db
untouched newer.db "$newer_msg" cache gc --cache newer.db
untouched newer.db "$newer_msg" cache import newer.db --cache good.db

# Foreign SQLite: another application's id, or unknown tables.
sqlite3 app.db "PRAGMA application_id = 1234; CREATE TABLE t (x); INSERT INTO t VALUES (1);"
untouched app.db "app.db belongs to another application (SQLite application_id 0x000004d2), it is not an ffnjit cache; ffnjit leaves it untouched: pass --cache with another path" cache import shipped.ffnjit --cache app.db
sqlite3 photos.db "CREATE TABLE photos (x); CREATE TABLE albums (y); INSERT INTO photos VALUES (1);"
untouched photos.db "photos.db is a SQLite database but not an ffnjit cache (it has tables albums, photos); ffnjit leaves it untouched: pass --cache with another path" cache import shipped.ffnjit --cache photos.db
untouched photos.db "not an ffnjit cache (it has tables albums, photos)" cache ls --cache photos.db
untouched photos.db "not an ffnjit cache" cache merge photos.db --cache good.db

# Read-only location: a directory and a file this user cannot write.
if [ "${as_user[0]:-}" = skip ]; then
  echo "note: running as root without setpriv; read-only location cases not run"
else
  mkdir ro && cp good.db ro/existing.db && chmod 444 ro/existing.db && chmod 555 ro
  ro_user() { "${as_user[@]}" "$ffnjit" "$@"; }
  before=$(sha256sum ro/existing.db)
  check "cannot create cache directory ro/sub: Permission denied; pass --cache PATH or set FFNJIT_CACHE to a writable location" ro_user cache import shipped.ffnjit --cache ro/sub/cache.db
  check "cannot create ro/new.db: the directory ro is not writable; pass --cache PATH or set FFNJIT_CACHE to a writable location" ro_user cache import shipped.ffnjit --cache ro/new.db
  check "ro/existing.db is read-only; make it writable" ro_user cache import shipped.ffnjit --cache ro/existing.db
  check "ro/existing.db is read-only; make it writable" ro_user cache gc --cache ro/existing.db
  # Reading works on read-only media and writes nothing.
  if out=$(ro_user cache ls --cache ro/existing.db) && [[ "$out" == *"binaries: 64"* ]] &&
     ro_user cache verify --cache ro/existing.db >/dev/null; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: cache ls/verify of a read-only cache: $out"
  fi
  [ "$before" = "$(sha256sum ro/existing.db)" ] || { fail=$((fail + 1)); echo "FAIL: ro/existing.db changed"; }
  [ ! -e ro/sub ] && [ ! -e ro/new.db ] || { fail=$((fail + 1)); echo "FAIL: files created in ro/"; }
fi

# Missing caches are not created by reading commands; usage errors exit 2.
check "no ffnjit cache at missing/cache.db; run \`ffnjit tune\` to create one, or pass --cache PATH or set FFNJIT_CACHE" "$ffnjit" cache ls --cache missing/cache.db
[ ! -e missing ] || { fail=$((fail + 1)); echo "FAIL: cache ls created missing/"; }
check "shipped.ffnjit already exists; ffnjit does not overwrite files: remove it or pick another name" "$ffnjit" cache export shipped.ffnjit --cache good.db
check "unknown subcommand 'frob'; run \`ffnjit cache --help\`" "$ffnjit" cache frob
check "--older-than must be an integer, got 'soon'" "$ffnjit" cache gc --older-than soon --cache good.db
check "missing <file>; run \`ffnjit cache export --help\`" "$ffnjit" cache export --cache good.db
check "cannot merge good.db into itself" "$ffnjit" cache merge good.db --cache good.db
check "no record with key or kernel name 'nope' in good.db" "$ffnjit" cache show nope --cache good.db
"$ffnjit" cache >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: ffnjit cache -> rc=$rc, wanted 2"; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
