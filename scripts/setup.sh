#!/usr/bin/env bash
# Idempotent set-up of everything the platform needs on a fresh machine:
#   .venv      the platform (Airflow, DVC, GX, torch, transformers, sam2, ...) from requirements/lock.txt
#   .venv-ls   the Label Studio server, in its own environment (requirements/labelstudio.lock)
#   .venv-<x>  one small environment per requirements/trainer-<x>.lock: the trainer libraries a release is
#              tested against at versions that cannot share .venv (datasets 3.x, verl's configuration)
#   Debian     chromium (browser tests), redis-server (Celery scale-out test), docker-compose (compose checks)
# Each part is skipped when its stamp matches the lock file it was built from, so a second run takes ~1 s.
# Every pip install is --require-hashes: each artefact must match a sha256 in the lock (hashes from PyPI,
# scripts/lock-hashes), installers included (requirements/bootstrap.lock), so no index, mirror or cache can
# swap a package. Only the project itself (the checkout) is installed without a hash.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
HASHED=(install -q --require-hashes)

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian packages: ${need_apt[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}") >/tmp/hopchain-apt.log 2>&1 \
      || echo "warning: apt-get install failed (see /tmp/hopchain-apt.log); tests needing ${need_apt[*]} will be skipped with a reason"
  else
    echo "note: ${need_apt[*]} missing and apt-get not usable; tests needing them are skipped with a reason"
  fi
fi

install_ls() {
  local want; want=$(stamp_of requirements/bootstrap.lock requirements/labelstudio.lock)
  if [ -f .venv-ls/.stamp ] && [ "$(cat .venv-ls/.stamp)" = "$want" ]; then return; fi
  echo "==> Label Studio environment (.venv-ls; log in /tmp/hopchain-setup-ls.log)"
  rm -rf .venv-ls
  $PY -m venv .venv-ls
  .venv-ls/bin/pip "${HASHED[@]}" -r requirements/bootstrap.lock
  .venv-ls/bin/pip "${HASHED[@]}" -r requirements/labelstudio.lock
  echo "$want" > .venv-ls/.stamp
}

install_main() {
  local want; want=$(stamp_of requirements/bootstrap.lock requirements/lock.txt pyproject.toml)
  if [ -f .venv/.stamp ] && [ "$(cat .venv/.stamp)" = "$want" ]; then return; fi
  echo "==> platform environment (.venv; log in /tmp/hopchain-setup-main.log)"
  {
    [ -x .venv/bin/python ] || $PY -m venv .venv
    .venv/bin/pip "${HASHED[@]}" -r requirements/bootstrap.lock
    grep -v '^sam2==' requirements/lock.txt > .venv/lock-nosam2.txt
    .venv/bin/pip "${HASHED[@]}" -r .venv/lock-nosam2.txt
    # sam2 (in the lock, hashed) is an sdist: built against the installed torch, without its CUDA
    # extension, so it comes after the rest of the lock and without build isolation.
    grep '^sam2==' requirements/lock.txt > .venv/lock-sam2.txt
    SAM2_BUILD_CUDA=0 .venv/bin/pip "${HASHED[@]}" --no-build-isolation --no-deps -r .venv/lock-sam2.txt
    # The project itself: the checkout, built by the hashed setuptools (no isolated build env to fetch).
    .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  } > /tmp/hopchain-setup-main.log 2>&1 || { echo "platform environment failed:"; tail -30 /tmp/hopchain-setup-main.log; exit 1; }
  echo "$want" > .venv/.stamp
}

# requirements/trainer-<x>.lock -> .venv-<x> (stamped like the others; pip's own resolver, no extra steps).
install_trainer_envs() {
  local lock name want
  for lock in requirements/trainer-*.lock; do
    [ -e "$lock" ] || continue
    name=$(basename "$lock" .lock); name=${name#trainer-}
    want=$(stamp_of requirements/bootstrap.lock "$lock")
    if [ -f ".venv-$name/.stamp" ] && [ "$(cat ".venv-$name/.stamp")" = "$want" ]; then continue; fi
    echo "==> trainer environment .venv-$name ($lock)"
    rm -rf ".venv-$name"
    $PY -m venv ".venv-$name"
    ".venv-$name/bin/pip" "${HASHED[@]}" -r requirements/bootstrap.lock
    ".venv-$name/bin/pip" "${HASHED[@]}" -r "$lock"
    echo "$want" > ".venv-$name/.stamp"
  done
}

# The environments install in parallel (each is mostly waiting on I/O).
install_ls > /tmp/hopchain-setup-ls.log 2>&1 &
ls_pid=$!
install_trainer_envs > /tmp/hopchain-setup-trainers.log 2>&1 &
tr_pid=$!
install_main
if ! wait "$ls_pid"; then
  echo "Label Studio environment failed:"; tail -20 /tmp/hopchain-setup-ls.log; exit 1
fi
if ! wait "$tr_pid"; then
  echo "trainer environments failed:"; tail -20 /tmp/hopchain-setup-trainers.log; exit 1
fi
grep -v "is ignored: it is neither" /tmp/hopchain-setup-ls.log || true
echo "==> set-up complete"
