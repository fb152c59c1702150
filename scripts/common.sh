# Shared by ./test.sh and ./study.sh: install what is missing, configure, build.
# Sourced, not run. Functions exit with a message that says what to do when they cannot proceed.

DL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DL_JOBS=$(nproc 2>/dev/null || echo 2)

# Debian packages the build, the tests and the study need.
DL_PACKAGES=(cmake ninja-build g++ pkg-config libfmt-dev zlib1g-dev nlohmann-json3-dev doctest-dev
             libcli11-dev libstb-dev dataset-fashion-mnist python3-torch python3-torchvision
             python3-matplotlib python3-scipy python3-sklearn libonnx-dev libprotobuf-dev python3-onnx
             python3-venv libopenmpi-dev openmpi-bin)

dl_ensure_packages() {
  local missing=() p
  for p in "${DL_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: these Debian packages are missing: ${missing[*]}" >&2
    echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# dl_ensure_onnxruntime DIR: a virtual environment in DIR (with Debian's packages visible) that has
# PyPI's onnxruntime, for the tests that run exported models with it; exports DL_ORT_PYTHON. Without
# a network it says so and goes on: those tests then report themselves skipped.
dl_ensure_onnxruntime() {
  local venv
  venv=$(realpath -m "$1")  # absolute: the tests run from inside the build folder
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime' 2>/dev/null; then
    echo "installing onnxruntime (PyPI) into $venv for the ONNX tests"
    if ! { /usr/bin/python3 -m venv --system-site-packages "$venv" &&
           "$venv/bin/pip" install -q --disable-pip-version-check onnxruntime; }; then
      echo "note: could not install onnxruntime; the tests that need it will be skipped" >&2
      return 0
    fi
  fi
  export DL_ORT_PYTHON="$venv/bin/python"
}

# dl_build BUILD_DIR [cmake args...]: configure once, then build with all cores: everything, or
# only the target named by DL_BUILD_TARGET.
dl_build() {
  local dir=$1
  shift
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$DL_ROOT" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
  else
    cmake -S "$DL_ROOT" -B "$dir" "$@" >/dev/null
  fi
  cmake --build "$dir" -j "$DL_JOBS" ${DL_BUILD_TARGET:+--target "$DL_BUILD_TARGET"}
}
