"""Run a benchmark suite end to end: ``python benchmark.py suite=smoke`` (plan → train → tables → report)."""

from nnlight.pipeline.commands import benchmark

if __name__ == "__main__":
    benchmark()
