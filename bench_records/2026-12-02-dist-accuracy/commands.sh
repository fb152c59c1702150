#!/bin/bash
cd /work/wt-dist/build
A="--epochs 4 --batch-size 64 --seed 42 --train-limit 18000"
echo "single start $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
./bin/scratch_cnn $A --threads 2 --out /tmp/dist_acc/single > /tmp/dist_acc/single.txt 2>&1; echo "single rc=$? $(date -u +%T)"
echo "dist start $(date -u +%T)"
OMP_NUM_THREADS=1 mpiexec --oversubscribe --allow-run-as-root --bind-to none -np 2 ./bin/scratch_cnn --distributed $A --threads 1 --out /tmp/dist_acc/dist2 > /tmp/dist_acc/dist2.txt 2>&1; echo "dist rc=$? $(date -u +%T)"
OMP_NUM_THREADS=1 mpiexec --oversubscribe --allow-run-as-root --bind-to none -np 2 ./bin/scratch_cnn --distributed --sync-bn $A --threads 1 --out /tmp/dist_acc/dist2sync > /tmp/dist_acc/dist2sync.txt 2>&1; echo "syncbn rc=$? $(date -u +%T)"
