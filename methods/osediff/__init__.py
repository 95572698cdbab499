"""OSEDiff building blocks. Only the architecture (random weights) lives here so far: it serves
the profiler and the AdcSR-vs-OSEDiff efficiency benchmark. No ``osediff`` method is registered
until its adapter loads the official weights."""
