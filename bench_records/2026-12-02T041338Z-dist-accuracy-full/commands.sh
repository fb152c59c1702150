#!/bin/bash
cd /work/main/build
echo "single start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
./bin/scratch_cnn --seed 42 --threads 2 --out runs/single > runs/single.log 2>&1; echo "single rc=$? end $(date -u +%T)"
echo "dist2 start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 mpiexec --oversubscribe --allow-run-as-root --bind-to none -np 2 ./bin/scratch_cnn --distributed --seed 42 --threads 1 --out runs/dist2 > runs/dist2.log 2>&1; echo "dist2 rc=$? end $(date -u +%T)"
