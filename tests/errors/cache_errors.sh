#!/usr/bin/env bash
# errors tier, cache: each bad cache file (not SQLite, truncated, from a newer ffnjit,
# foreign SQLite, read-only location; crashed WAL and journal states; untrusted
# locations; forged import files) gives one line on stderr naming the fix, exits
# non-zero, and leaves the user's file and its side files byte for byte as they were.
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

# --- Files promised untouched (issue 18, item 6): the database and every side file keep
# their bytes, and no side file appears. States a crash leaves are made with Python's
# sqlite3 module: a copy of the files taken while the connection is open.
sides() {  # sha256 of FILE and each side file ("-" when absent)
  local f
  for f in "$1" "$1-wal" "$1-shm" "$1-journal"; do
    if [ -e "$f" ]; then sha256sum < "$f"; else echo "- $f"; fi
  done
}
all_untouched() {  # all_untouched FILE "<message>" <ffnjit args...>
  local file=$1 want=$2; shift 2
  local before
  before=$(sides "$file")
  check "$want" "$ffnjit" "$@"
  [ "$before" = "$(sides "$file")" ] || { fail=$((fail + 1)); echo "FAIL: ffnjit $* changed $file or its side files"; }
}
crash_copy() {  # crash_copy SRC DST SQL...: run SQL on SRC, copy SRC (+ -wal/-journal) to DST while open
  python3 - "$@" <<'PY'
import shutil, sqlite3, sys, os
src, dst, *sqls = sys.argv[1:]
c = sqlite3.connect(src, isolation_level=None)
for q in sqls:
    c.executescript(q) if not q.startswith("BEGIN") else [c.execute(x) for x in q.split(";") if x.strip()]
shutil.copy(src, dst)
for side in ("-wal", "-journal"):
    if os.path.exists(src + side):
        shutil.copy(src + side, dst + side)
os._exit(0)  # as a crash: no rollback, no checkpoint
PY
}
if command -v python3 >/dev/null; then
  crash_copy appwal.src appwal.db "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA application_id=1234; CREATE TABLE notes (x); INSERT INTO notes VALUES (1);"
  [ -s appwal.db-wal ] || { fail=$((fail + 1)); echo "FAIL: no -wal made"; }
  for sub in ls verify gc "import shipped.ffnjit"; do
    # shellcheck disable=SC2086
    all_untouched appwal.db "appwal.db belongs to another application (SQLite application_id 0x000004d2), it is not an ffnjit cache; ffnjit leaves it untouched" cache $sub --cache appwal.db
  done
  all_untouched appwal.db "appwal.db belongs to another application" cache import appwal.db --cache good.db
  crash_copy plainwal.src plainwal.db "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE photos (x); INSERT INTO photos VALUES (1);"
  all_untouched plainwal.db "plainwal.db is a SQLite database without ffnjit's application_id and with a pending plainwal.db-wal of the program that uses it, not an ffnjit cache; ffnjit leaves it untouched" cache ls --cache plainwal.db
  all_untouched plainwal.db "with a pending plainwal.db-wal" cache merge plainwal.db --cache good.db
  # A hot rollback journal: the main file half-written mid-transaction.
  crash_copy hot.src hot.db "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(200) FROM n;" \
    "BEGIN; PRAGMA cache_size = 2; UPDATE t SET x = randomblob(200)"
  [ -s hot.db-journal ] || { fail=$((fail + 1)); echo "FAIL: no hot journal made"; }
  for sub in ls verify export-it gc; do
    args=(cache "$sub" --cache hot.db); [ "$sub" = export-it ] && args=(cache export hot-out.x --cache hot.db)
    all_untouched hot.db "hot.db is a SQLite database without ffnjit's application_id and with a pending hot.db-journal" "${args[@]}"
  done
  all_untouched hot.db "with a pending hot.db-journal" cache import hot.db --cache good.db
  # A cache a newer ffnjit is migrating: the main file still says v2, its -wal says v9.
  "$writer" base.db 1 0 4 >/dev/null
  crash_copy base.db newwal.db "PRAGMA wal_autocheckpoint=0; PRAGMA user_version=9; CREATE TABLE v9 (x);"
  for sub in ls verify gc "import shipped.ffnjit"; do
    # shellcheck disable=SC2086
    all_untouched newwal.db "newwal.db was created by a newer ffnjit (schema v9, this build reads up to v2); upgrade ffnjit or use another --cache" cache $sub --cache newwal.db
  done
  all_untouched newwal.db "was created by a newer ffnjit (schema v9" cache merge newwal.db --cache good.db
else
  fail=$((fail + 1)); echo "FAIL: python3 is needed to make crashed SQLite files (scripts/install-deps.sh installs it)"
fi

# A 0444 cache (even for root): read without creating -wal/-shm; writing is refused
# before any work (tune used to compile everything, then fail).
cp good.db ro444.db && chmod 444 ro444.db
before=$(sides ro444.db)
if out=$("$ffnjit" cache ls --cache ro444.db) && [[ "$out" == *"binaries: 64"* ]] &&
   "$ffnjit" cache verify --cache ro444.db >/dev/null && "$ffnjit" cache export ro444.x --cache ro444.db >/dev/null; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo "FAIL: reading a 0444 cache: $out"
fi
[ "$before" = "$(sides ro444.db)" ] || { fail=$((fail + 1)); echo "FAIL: reading ro444.db left side files or changed it"; }
"$ffnjit" demo-checkpoint ckpt >/dev/null || { echo "FAIL: demo-checkpoint"; exit 1; }
err=$("$ffnjit" tune ckpt --compile-only --cache ro444.db 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 0 ] && [[ "$err" == *"ro444.db is read-only; make it writable (\`chmod u+w ro444.db\`)"* ]] &&
   [[ "$err" != *"/8]"* ]]; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo "FAIL: tune into a 0444 cache -> rc=$rc: $err"
fi
all_untouched ro444.db "ro444.db is read-only; make it writable" cache import shipped.ffnjit --cache ro444.db

# --- Cache location (issue 18, items 7 and 9): owner and mode checks, no /tmp fallback,
# no creating through dangling symlinks, an explicit empty path refused.
mkdir -m 700 shared && chmod 777 shared
check "the cache directory $work/shared is writable by group or others (mode 0777)" "$ffnjit" cache import shipped.ffnjit --cache shared/cache.db
[ -z "$(ls -A shared)" ] || { fail=$((fail + 1)); echo "FAIL: files created in a 0777 directory"; }
cp good.db shared/planted.db
check "run \`chmod go-w $work/shared\`" "$ffnjit" cache ls --cache shared/planted.db
check "no cache location: none of FFNJIT_CACHE, XDG_CACHE_HOME and HOME is set; set one of them or pass --cache PATH" env -u HOME -u XDG_CACHE_HOME -u FFNJIT_CACHE "$ffnjit" cache ls
check "the cache path is empty; pass --cache PATH (or cache_path) with a file name" "$ffnjit" cache ls --cache ""
check "the cache path is empty" env FFNJIT_CACHE=good.db "$ffnjit" cache import shipped.ffnjit --cache ""
check "the cache path is empty" "$ffnjit" tune ckpt --compile-only --cache ""
ln -s "$work/nowhere/target.db" dangling.db && mkdir nowhere
check "dangling.db is a symlink to $work/nowhere/target.db, which does not exist; ffnjit never creates files through symlinks" "$ffnjit" cache import shipped.ffnjit --cache dangling.db
[ ! -e nowhere/target.db ] || { fail=$((fail + 1)); echo "FAIL: created the target of a dangling symlink"; }
if [ "$(id -u)" -eq 0 ]; then
  # A cache planted by another user (as under the old /tmp fallback) is refused, even by root.
  mkdir -m 700 mine && cp good.db mine/cache.db && chown nobody mine/cache.db
  all_untouched mine/cache.db "the cache mine/cache.db is owned by nobody" cache ls --cache mine/cache.db
  check "is owned by nobody" env HOME="$work/mine-home" "$ffnjit" cache ls --cache mine/cache.db
  mkdir -p theirs && chown nobody theirs
  check "the cache directory $work/theirs is owned by nobody" "$ffnjit" cache import shipped.ffnjit --cache theirs/cache.db
  [ -z "$(ls -A theirs)" ] || { fail=$((fail + 1)); echo "FAIL: files created in nobody's directory"; }
  # Importing another user's file is fine: it is only read and verified.
  out=$("$ffnjit" cache import mine/cache.db --no-rebuild --cache fromnobody.db) && [[ "$out" == *"binaries 64 added"* ]] &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: import of nobody's cache: $out"; }
else
  echo "note: not root; the cases with files owned by another user were not run"
fi

# --- Import verification (issue 18, item 8): forged records refuse the file, naming
# the record; nothing is imported and both files keep their bytes.
import_refused() {  # import_refused FILE "<message>" [import flags...]
  local file=$1 want=$2; shift 2
  local before_file before_good
  before_file=$(sides "$file") before_good=$(sides good.db)
  check "$want" "$ffnjit" cache import "$file" "$@" --cache good.db
  [ "$before_file" = "$(sides "$file")" ] && [ "$before_good" = "$(sides good.db)" ] ||
    { fail=$((fail + 1)); echo "FAIL: import of $file changed a file"; }
}
k=($(sqlite3 -readonly shipped.ffnjit "SELECT key FROM binaries ORDER BY key LIMIT 2"))
cp shipped.ffnjit swapped.ffnjit
sqlite3 swapped.ffnjit "CREATE TEMP TABLE c AS SELECT key, cubin, cubin_sha256 FROM binaries;
  UPDATE binaries SET cubin = (SELECT cubin FROM c WHERE c.key = '${k[1]}'), cubin_sha256 = (SELECT cubin_sha256 FROM c WHERE c.key = '${k[1]}') WHERE key = '${k[0]}';
  UPDATE binaries SET cubin = (SELECT cubin FROM c WHERE c.key = '${k[0]}'), cubin_sha256 = (SELECT cubin_sha256 FROM c WHERE c.key = '${k[0]}') WHERE key = '${k[1]}';"
import_refused swapped.ffnjit "refusing swapped.ffnjit: its binary record ${k[0]:0:12} (" --no-rebuild
import_refused swapped.ffnjit "the cubin is not a well-formed CUDA ELF image: it defines no function" --no-rebuild
cp shipped.ffnjit fake.ffnjit
sqlite3 fake.ffnjit "UPDATE binaries SET cubin = X'7f454c46', cubin_sha256 = '$(printf '\177ELF' | sha256sum | cut -c1-64)' WHERE key = '${k[0]}'"
import_refused fake.ffnjit "its binary record ${k[0]:0:12} (" --no-rebuild
import_refused fake.ffnjit "4 bytes, shorter than an ELF header; nothing was imported" --no-rebuild
cp shipped.ffnjit forgedkey.ffnjit
sqlite3 forgedkey.ffnjit "UPDATE binaries SET key = '$(printf 'f%.0s' {1..64})' WHERE key = '${k[0]}'"
import_refused forgedkey.ffnjit "its binary record ffffffffffff (" --no-rebuild
import_refused forgedkey.ffnjit "key does not match its content (source, templates, generator, NVRTC, options)" --no-rebuild
cp shipped.ffnjit cut.ffnjit
sqlite3 cut.ffnjit "UPDATE binaries SET cubin = substr(cubin, 1, 100) WHERE key = '${k[1]}'"
import_refused cut.ffnjit "its binary record ${k[1]:0:12} (" --no-rebuild
import_refused cut.ffnjit "cubin does not match its SHA-256 digest; the cubin is not a well-formed CUDA ELF image" --no-rebuild
# `cache verify` finds the same in a cache edited behind ffnjit's back.
cp good.db edited.db && sqlite3 edited.db "UPDATE binaries SET cubin = X'7f454c46' WHERE key IN (SELECT key FROM binaries LIMIT 1)"
check "2 problem(s) with records in edited.db" "$ffnjit" cache verify --cache edited.db  # digest and ELF

# Real kernels (NVRTC, no GPU): a cubin that passes every structural check (a sibling
# kernel's cubin with its symbol renamed, digest updated) is caught by the rebuild.
"$ffnjit" tune ckpt --compile-only --cache real.db >/dev/null && "$ffnjit" cache export real.ffnjit --cache real.db >/dev/null ||
  { echo "FAIL: tune --compile-only"; exit 1; }
cp real.ffnjit renamed.ffnjit
if python3 - renamed.ffnjit <<'PY'
import hashlib, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT key, kernel_name, cubin FROM binaries").fetchall()
for a in rows:
    for b in rows:
        if a[0] != b[0] and len(a[1]) == len(b[1]) and a[1] != b[1]:
            forged = a[2].replace(a[1].encode(), b[1].encode())
            db.execute("UPDATE binaries SET cubin = ?, cubin_sha256 = ? WHERE key = ?",
                       (forged, hashlib.sha256(forged).hexdigest(), b[0]))
            db.commit()
            print(b[0])
            sys.exit(0)
sys.exit(1)
PY
then
  out=$("$ffnjit" cache verify --cache renamed.ffnjit 2>&1) && [[ "$out" == *"binaries: "* ]] &&
    pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the renamed cubin should pass the structural checks: $out"; }
  import_refused renamed.ffnjit "fails the rebuild: its cubin ("
  import_refused renamed.ffnjit "bytes) is not what NVRTC builds from its source"
  check "1 problem(s) with records in renamed.ffnjit" "$ffnjit" cache verify --rebuild --cache renamed.ffnjit
else
  fail=$((fail + 1)); echo "FAIL: no two kernels with names of one length in real.ffnjit"
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
