"""Fused and memory-saving ops. Each has a plain reference implementation it is tested against."""
