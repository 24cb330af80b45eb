"""Servers the benchmarks compare ours with; each file runs as a script (`python <file>`) over stdio."""
