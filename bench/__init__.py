"""Benchmarks of link.etcd against what users would write instead (``python -m bench``).

Modules: :mod:`bench.trees` (the trees), :mod:`bench.contenders` (who does
what), :mod:`bench.peers` (the gRPC clients, each in its own worker process),
:mod:`bench.runner` (interleaved timing), :mod:`bench.metrics` (request
counts), :mod:`bench.memory` (peak RSS in a fresh process),
:mod:`bench.profile` (py-spy hotspots), :mod:`bench.analysis` (ratios, goals,
growth) and :mod:`bench.report` (tables, plot, ``docs/performance.md``).
"""
