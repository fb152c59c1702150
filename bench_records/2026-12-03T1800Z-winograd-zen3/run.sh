#!/bin/bash
# Three alternating rounds of the old (612bd5d) and new builds of winograd_layers.cpp (see its header), each
# process 5 rounds of its configurations; the machine: lscpu's model name and flags printed first.
lscpu | grep -E "Model name|^CPU\(s\)"
grep -o -E "avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2|fma" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
for r in 1 2 3; do
  echo "== round $r: old"; /tmp/wg/old_h 5
  echo "== round $r: new"; /tmp/wg/new_h 5 2:256:0 2:256:1 4:256:0 4:256:1
done
