"""Compiler flags for code that includes libnl's headers (//third_party:libnl_route)."""

LIBNL_COPTS = ["-isystem", "/usr/include/libnl3"]
