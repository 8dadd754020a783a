#!/usr/bin/env bash
# Runs the whole test suite against each supported TypeORM line, with one ioredis line (5 unless
# IOREDIS says otherwise), in a scratch copy of the project, so the checkout's node_modules and
# package-lock.json stay as they are.
#
#   npm run compat                 # typeorm 0.3 (latest 0.3.x) and 1 (latest 1.x), ioredis 5
#   npm run compat -- 0.3          # one line only
#   IOREDIS=6 npm run compat -- 1  # typeorm 1 with the latest ioredis 6.x
#
# The tests need the same PostgreSQL and Redis as `npm test` (PG_URL and REDIS_URL are passed on).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lines=("$@")
ioredis="${IOREDIS:-5}"
[ ${#lines[@]} -eq 0 ] && lines=(0.3 1)
logs="$(mktemp -d "${TMPDIR:-/tmp}/autocache-compat-logs.XXXXXX")"
results=()
failed=0

installed() {
  node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(`node_modules/${process.argv[1]}/package.json`, "utf8")).version)' "$1"
}

for line in "${lines[@]}"; do
  work="$(mktemp -d "${TMPDIR:-/tmp}/autocache-compat.XXXXXX")"
  log="$logs/typeorm-$line-ioredis-$ioredis.log"
  echo "compat: typeorm@$line, ioredis@$ioredis in $work (log: $log)"
  tar -C "$root" --exclude=./node_modules --exclude=./dist --exclude=./.git -cf - . | tar -C "$work" -xf -
  status=0
  # --legacy-peer-deps: typeorm itself declares ioredis ^5 as an optional peer, so trying another
  # ioredis line means overriding that declaration (and ours) in the scratch copy.
  (
    cd "$work" &&
      npm ci --no-audit --no-fund &&
      npm install --no-save --no-audit --no-fund --legacy-peer-deps "typeorm@$line" "ioredis@$ioredis"
  ) >"$log" 2>&1 || status=$?
  if [ $status -ne 0 ]; then
    results+=("typeorm@$line, ioredis@$ioredis: FAIL (install, see $log)")
    failed=1
    tail -n 30 "$log"
    rm -rf "$work"
    continue
  fi
  versions="typeorm $(cd "$work" && installed typeorm), ioredis $(cd "$work" && installed ioredis)"
  echo "compat: running the suite with $versions"
  (cd "$work" && npm test) >>"$log" 2>&1 || status=$?
  summary="$(grep -E '^ +[0-9]+ (passing|failing|pending)' "$log" | sed -E 's/^ +//' | paste -sd ',' - | sed 's/,/, /g')"
  if [ $status -eq 0 ]; then
    results+=("$versions: PASS ($summary)")
  else
    results+=("$versions: FAIL (${summary:-build failed}; see $log)")
    failed=1
    tail -n 60 "$log"
  fi
  rm -rf "$work"
done

echo
for result in "${results[@]}"; do echo "compat: $result"; done
exit $failed
