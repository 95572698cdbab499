"""harness: reproducible benchmark and evaluation harness for real-world image super-resolution.

Data flow: dataset -> method -> cached SR images -> metrics -> results store -> report.
See ARCHITECTURE.md for where each part lives.
"""

__version__ = "0.1.0"
