#!/bin/bash
for round in 1 2 3; do
  for prof in s3like loopback; do
    for tree in base new; do
      cd /tmp/readcap-$tree
      v=ours,dlfo; [ $prof = loopback ] && v=ours,boto3
      echo "=== $tree $prof round $round $(uptime)"
      PYTHONPATH=$PWD timeout 300 /work/main/.nox/tests/bin/python -m benchmarks.read_micro --profile $prof --rounds 1 --variants $v 2>&1 | grep -E "MB/s|widths"
    done
  done
done
