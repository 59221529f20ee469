"""Side-by-side performance benchmarks of kdprivacy: ``python -m benchmarks.run`` (see README.md here)."""
