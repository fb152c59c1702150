#!/bin/bash
# alt.sh ROUNDS args...: algo_old and algo_new alternating processes; prints the GFLOP/s of each
R=$1; shift
for i in $(seq $R); do
  o=$(OMP_NUM_THREADS=2 ./algo_old "$@" | awk "{print \$2}"); n=$(OMP_NUM_THREADS=2 ./algo_new "$@" | awk "{print \$2}")
  echo "$o $n"
done | python3 -c "
import sys,statistics
r=[tuple(map(float,l.split())) for l in sys.stdin]
print('old %.1f new %.1f  paired new/old median %.3f  (%s)'%(statistics.median(a for a,b in r),statistics.median(b for a,b in r),statistics.median(b/a for a,b in r),' '.join('%.2f'%(b/a) for a,b in r)))"
