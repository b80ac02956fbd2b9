"""Chunk checksums pushed into each store, bisection to rows, repair through the stream, reports."""
