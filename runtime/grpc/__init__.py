"""The gRPC edge: servicers, server, stream protocol handler, tensor codecs; generated stubs in ``proto/``."""
