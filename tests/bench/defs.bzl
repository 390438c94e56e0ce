"""The shape every benchmark that drives a real vmms shares."""

def vmms_benchmark(name, data = [], deps = [], tags = []):
    """A `bazel run` benchmark NAME.cc that starts vmms and talks to it.

    Args:
      name: the target, built from NAME.cc.
      data: what it needs beyond vmms, vmwp and vmctl (its guests, references).
      deps: libraries beyond the harness, gRPC API and bench_stats.
      tags: Bazel tags (e.g. manual).
    """
    native.cc_binary(
        name = name,
        testonly = True,
        srcs = [name + ".cc"],
        data = [
            "//cli:vmctl",
            "//vmms:vmms",
            "//vmwp:vmwp",
        ] + data,
        deps = [
            ":bench_stats",
            "//proto:vm_cc_grpc",
            "//tests/harness:process",
            "//tests/harness:vmms_instance",
            "//third_party:absl",
            "//third_party:grpc++",
        ] + deps,
        tags = tags,
    )
