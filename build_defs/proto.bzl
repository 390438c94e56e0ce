"""C++ (and gRPC) code generation with Debian's protoc, offline.

Bazel 4.2.3's native proto rules want to build protoc from source; Debian ships protoc and
grpc_cpp_plugin, so a genrule runs them and a cc_library wraps the output.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def _stem(src):
    return src[:-len(".proto")]

def cc_grpc_library(name, srcs, deps = [], grpc = True, visibility = None):
    """Generates C++ messages (and gRPC stubs when grpc=True) for `srcs`.

    Imports resolve from the workspace root (`import "proto/hvstack/v1/x.proto"`) and from the
    well-known types under /usr/include.
    """
    pkg = native.package_name()
    outs = []
    for src in srcs:
        outs.append(_stem(src) + ".pb.h")
        outs.append(_stem(src) + ".pb.cc")
        if grpc:
            outs.append(_stem(src) + ".grpc.pb.h")
            outs.append(_stem(src) + ".grpc.pb.cc")

    dep_srcs = [d + "_protos" for d in deps]
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + dep_srcs,
        visibility = visibility,
    )

    grpc_flags = ""
    if grpc:
        grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin "
    cmd = ("/usr/bin/protoc -I. -I/usr/include --cpp_out=$(GENDIR) " + grpc_flags +
           " ".join(["%s/%s" % (pkg, s) for s in srcs]))

    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_srcs,
        outs = outs,
        cmd = cmd,
    )

    cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + [
            "//third_party:protobuf",
        ] + (["//third_party:grpc++"] if grpc else []),
        visibility = visibility,
    )
