"""Consistent bootstraps: chunked, lock-free snapshots handed over to the stream (op ``r``)."""
