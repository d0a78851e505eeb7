"""Benchmark suite: paired, interleaved latency timing of dense vs pruned models on several backends,
accuracy and FLOPs from the one counter, a JSON/Markdown report and plots. See ``bench/README.md``."""


class BenchError(ValueError):
    """One-line, user-facing problem with a benchmark request (bad option, models that cannot be paired)."""
