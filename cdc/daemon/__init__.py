"""The per-source daemon: wires a source, the stream (or the sinks) and checkpoints together."""
