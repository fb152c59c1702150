#!/bin/sh
# The files compiled for one instruction set (gemm_avx2.cpp, gemm_avx512.cpp, simd_avx512.cpp, ...) must not
# define weak symbols (inline functions or template instances that other files may define too): the linker keeps one
# copy of each, possibly the one compiled with AVX-512, and code that runs on every CPU would then call it (an illegal
# instruction on a CPU without AVX-512). Usage: isa_objects.sh NM OBJECT... (the objects of dl_tensor; the files
# whose names carry an instruction set are checked).
nm=$1
shift
bad=0
n=0
for o in "$@"; do
  case "$o" in *avx512* | *avx2* | *amx*) ;; *) continue ;; esac
  n=$((n + 1))
  weak=$("$nm" --defined-only "$o" | awk '$2 ~ /^[WVu]$/ && $3 != "DW.ref.__gxx_personality_v0" { print $3 }')
  if [ -n "$weak" ]; then
    echo "$o defines weak symbols (keep them in an anonymous namespace or make them static):"
    echo "$weak" | c++filt
    bad=1
  fi
done
if [ "$n" -eq 0 ]; then
  echo "no instruction-set objects among the arguments"
  exit 1
fi
echo "$n instruction-set objects checked"
exit $bad
