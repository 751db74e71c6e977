"""Serving without a wire: repository, sessions, batcher, data plane, config, metrics.

Plain values in and out (names, ids, state bytes, ndarrays); the gRPC layer converts at the edge.
"""
