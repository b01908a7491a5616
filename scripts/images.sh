#!/usr/bin/env bash
# `make images`: build the project's images with podman and check each one runs.
#
#   scripts/images.sh build   the Debian 12 base (debootstrap, once: kept in podman's image
#                             store), then docker/<name>/Dockerfile for each image with
#                             BASE=<that base>, tagged localhost/ecdctr/<name>:<version>
#   scripts/images.sh check   each image runs `ecdctr plan` and a real step (see check_*)
#   scripts/images.sh sizes   name, size and build seconds of each image (build/images.tsv)
#
# Here no image registry can be reached, so the base is made from Debian's packages; in
# production the Dockerfiles' default BASE (the public Debian image) is used with the same
# layers above it. Builds reach PyPI through the host's CA bundle (SSL_CERT_FILE), mounted into
# the build step only, never copied into a layer. ECDCTR_IMAGES: the images to build and check
# (default "trainer spark airflow"). podman runs with runc and cgroupfs (crun fails on hosts with hybrid cgroups) and
# docker/containers.conf (podman's default open-files limit may exceed the host's).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
BASE="${ECDCTR_IMAGE_BASE:-localhost/ecdctr-base:bookworm}"
MIRROR="${ECDCTR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGES="${ECDCTR_IMAGES:-trainer spark airflow}"
# this script's own variables are not settings: the host's ecdctr refuses unknown ECDCTR_* names
unset ECDCTR_IMAGES ECDCTR_IMAGE_BASE ECDCTR_DEBIAN_MIRROR
export CONTAINERS_CONF="$ROOT/docker/containers.conf"
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
CA="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

say() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

engine() {
  if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing podman, runc and debootstrap with apt"
    flock /var/lock/ecdctr-apt.lock env DEBIAN_FRONTEND=noninteractive \
      sh -c 'apt-get update -q && apt-get install -y -q podman runc debootstrap' >/dev/null
  fi
}

base() {
  if "${PODMAN[@]}" image exists "$BASE"; then
    say "base $BASE: present"
    return
  fi
  local dir="$ROOT/build/base-rootfs"
  rm -rf "$dir" "$dir.tmp"
  say "base $BASE: debootstrap bookworm from $MIRROR (about 2 minutes)"
  debootstrap --variant=minbase bookworm "$dir.tmp" "$MIRROR" >"$ROOT/build/debootstrap.log" 2>&1 \
    || die "debootstrap failed: see build/debootstrap.log"
  mv "$dir.tmp" "$dir"
  tar -C "$dir" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
  rm -rf "$dir"
}

build() {
  engine
  mkdir -p build
  base
  : >build/images.tsv.tmp
  for name in $IMAGES; do
    [ -f "docker/$name/Dockerfile" ] || die "no docker/$name/Dockerfile"
    local tag="localhost/ecdctr/$name:$VERSION" t0 t1 log="build/image-$name.log"
    say "building $tag (log: $log)"
    t0=$(date +%s)
    "${PODMAN[@]}" build --format docker -f "docker/$name/Dockerfile" --build-arg "BASE=$BASE" --build-arg TF_GPU=0 \
      -v "$CA:/run/host-ca.crt:ro" -t "$tag" . >"$log" 2>&1 || { tail -20 "$log" >&2; die "building $tag failed: see $log"; }
    t1=$(date +%s)
    printf '%s\t%s\t%s\n' "$name" "$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$tag")" "$((t1 - t0))" \
      >>build/images.tsv.tmp
    say "built $tag in $((t1 - t0)) s"
  done
  mv build/images.tsv.tmp build/images.tsv
}

# The container command a step's Kubernetes pod gets (the step registry and pod_command, as
# the DAGs build it), for a logical date: JSON, one argument a line. The Spark master is local.
step_command() {
  "$ROOT/.venv/bin/python" - "$1" "$2" "$3" <<'PY'
import sys
from ecdctr_pipeline.orchestration import commands, steps
tier, name, ds = sys.argv[1:]
step = steps.TIERS[tier].step(name)
print("\n".join(commands.pod_command(step.kind, steps.render(step.argv, ds), spark_master="local[2]")))
PY
}

# Run step TIER/NAME of logical date DS in IMAGE as its pod would (the pod's command replaces
# the image's entry point), on the store mounted at /store.
run_step() {
  local image="$1" tier="$2" name="$3" ds="$4" cmd
  mapfile -t cmd < <(step_command "$tier" "$name" "$ds")
  say "$image: $tier/$name for $ds: ${cmd[*]}"
  "${RUN[@]}" --entrypoint "${cmd[0]}" "localhost/ecdctr/$image:$VERSION" "${cmd[@]:1}" >"$CHECK_DIR/$name.json" \
    2>"$CHECK_DIR/$name.log" || { tail -5 "$CHECK_DIR/$name.log" >&2; die "$image: step $tier/$name failed"; }
}

# One store in a host folder for all the checks: the trainer image simulates a tiny log, the
# Spark image runs the A-CTR DAG's ad extraction (Spark local, the pinned jars, Delta), the
# trainer image runs the same DAG's quality gate (Great Expectations) on it, the Airflow image
# migrates its database and parses the three DAGs; every image answers `ecdctr plan`; the
# host's own `ecdctr status` then reads what the containers wrote.
DS=2026-11-24
check_trainer() {
  say "trainer: simulate a tiny log, 2026-10-27..2026-11-23"
  "${RUN[@]}" "localhost/ecdctr/trainer:$VERSION" simulate --start 2026-10-27 --end 2026-11-23 --scale tiny --json \
    >/dev/null 2>"$CHECK_DIR/simulate.log" || { tail -5 "$CHECK_DIR/simulate.log" >&2; die "trainer: simulate"; }
  if [ -n "$(image_present spark)" ]; then run_step spark actr extract_ad_features "$DS"; else
    "${RUN[@]}" -e ECDCTR_FEATURES__ENGINE=duckdb "localhost/ecdctr/trainer:$VERSION" extract complete --domain ad \
      --as-of "$DS" --json >/dev/null || die "trainer: extract"
  fi
  run_step trainer actr quality_gate "$DS"
  grep -q '"checks"' "$CHECK_DIR/quality_gate.json" || die "trainer: the gate printed no result: $(cat "$CHECK_DIR/quality_gate.json")"
  check_docker_mode
}

# orchestration.execution: docker — the same gate as the A-CTR DAG's own DockerOperator (Airflow's
# Docker provider) against podman's Docker-compatible socket; its XCom is the step's result file
check_docker_mode() {
  local sock="$CHECK_DIR/podman.sock"
  printf 'store: {root: "file:///store"}\n' >"$CHECK_DIR/docker-mode.yaml"
  "${PODMAN[@]}" system service --time=0 "unix://$sock" >"$CHECK_DIR/podman-service.log" 2>&1 &
  local svc=$!
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
  AIRFLOW_HOME="$CHECK_DIR/airflow" \
    "$ROOT/.venv/bin/python" "$ROOT/scripts/docker_mode_check.py" --socket "unix://$sock" \
    --config "$CHECK_DIR/docker-mode.yaml" --store "$CHECK_DIR/store" --image "localhost/ecdctr/trainer:$VERSION" \
    --ds "$DS" >"$CHECK_DIR/docker-mode.json" 2>"$CHECK_DIR/docker-mode.log" \
    || { kill "$svc"; tail -5 "$CHECK_DIR/docker-mode.log" >&2; die "trainer: the DAG's DockerOperator (docker mode)"; }
  kill "$svc"
  grep -q '"checks"' "$CHECK_DIR/docker-mode.json" || die "docker mode: no step result came back as the XCom"
  say "trainer: docker mode ran the A-CTR DAG's quality_gate task through podman's socket"
}

check_spark() {
  "${RUN[@]}" "localhost/ecdctr/spark:$VERSION" --version >/dev/null 2>&1 || die "spark: spark-submit --version"
}

check_airflow() {
  local run=("${RUN[@]}" --no-healthcheck -e AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:////tmp/airflow.db
             "localhost/ecdctr/airflow:$VERSION")
  # Airflow 3 lists DAGs from its database: reserialize parses the DAG folder into it first
  "${run[@]}" bash -c 'airflow db migrate >/dev/null && airflow dags reserialize >/dev/null \
      && airflow dags list-import-errors -o json >/tmp/out/import-errors.json && airflow dags list -o json >/tmp/out/dags.json' \
    >"$CHECK_DIR/airflow.log" 2>&1 || { tail -5 "$CHECK_DIR/airflow.log" >&2; die "airflow: db migrate / dags reserialize / dags list"; }
  [ "$(tail -1 "$CHECK_DIR/out/import-errors.json" | tr -d '[:space:]')" = "[]" ] \
    || die "airflow: the DAGs do not import: $(cat "$CHECK_DIR/out/import-errors.json")"
  for dag in ecdctr_tpm_monthly ecdctr_cpm_weekly ecdctr_actr_daily; do
    grep -q "\"$dag\"" "$CHECK_DIR/out/dags.json" || die "airflow: DAG $dag not parsed: see $CHECK_DIR/out/dags.json"
  done
}

image_present() { "${PODMAN[@]}" image exists "localhost/ecdctr/$1:$VERSION" && echo yes || true; }

check() {
  CHECK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ecdctr-image-check.XXXXXX")"
  mkdir -m 0777 "$CHECK_DIR/store" "$CHECK_DIR/out"
  RUN=("${PODMAN[@]}" run --rm --network none -v "$CHECK_DIR/store:/store" -v "$CHECK_DIR/out:/tmp/out"
       -e ECDCTR_STORE=file:///store)
  local name
  for name in $IMAGES; do
    [ -n "$(image_present "$name")" ] || die "no image localhost/ecdctr/$name:$VERSION: make images builds it"
    "${RUN[@]}" --entrypoint ecdctr "localhost/ecdctr/$name:$VERSION" plan --as-of "$DS" --json 2>"$CHECK_DIR/plan.log" \
      | grep -q '"embedding_set": "2026-11"' || die "$name: ecdctr plan"
  done
  for name in $IMAGES; do
    "check_$name"
    say "$name: checked"
  done
  if [[ " $IMAGES " == *" trainer "* ]]; then  # the trainer's check writes the store
    ECDCTR_STORE="file://$CHECK_DIR/store" "$ROOT/.venv/bin/ecdctr" status --json | grep -q 'features/complete/ad' \
      || die "the host's status does not show the table the containers wrote"
  fi
  rm -rf "$CHECK_DIR"
  say "checked: ${IMAGES// /, } (plan in each; simulate, extraction, gate and DAG parsing); the host reads their store"
}

case "${1:-}" in
  build) build ;;
  check) check ;;
  sizes) cat build/images.tsv ;;
  *) die "usage: scripts/images.sh build|check|sizes" ;;
esac
