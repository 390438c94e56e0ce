"""Builds freestanding UnixHv guest programs into ELF64 x86-64 executables loaded at 1 MiB."""

# Freestanding: no libc, no exceptions/RTTI, no SSE (-mgeneral-regs-only, the boot CR4 has no
# OSFXSR), no red zone (interrupt handlers will run on the same stack), absolute addressing.
GUEST_COPTS = [
    "-std=c++20",
    "-O2",
    "-Wall",
    "-Wextra",
    "-ffreestanding",
    "-fno-exceptions",
    "-fno-rtti",
    "-fno-stack-protector",
    "-fno-pie",
    "-no-pie",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-asynchronous-unwind-tables",
    "-fno-tree-loop-distribute-patterns",  # keeps memcpy/memset loops from calling themselves
    "-nostdlib",
    "-static",
    "-Wl,--build-id=none",
    "-Wl,-z,max-page-size=4096",
    "-Wl,-z,noexecstack",
]

def unixhv_guest(name, srcs, visibility = None):
    """One guest program: `name` produces `name.elf` (bazel-bin/<pkg>/<name>.elf).

    Args:
      name: target name.
      srcs: the program's own .cc files (it defines unixhv_main).
      visibility: as usual.
    """
    native.genrule(
        name = name,
        srcs = srcs + [
            "//guest:unixhv_sources",
            "//guest:unixhv_headers",
            "//guest:unixhv/link.ld",
        ],
        outs = [name + ".elf"],
        cmd = " ".join(
            ["$(CC)"] + GUEST_COPTS + [
                "-I.",
                "-I$(GENDIR)",
                "-Wl,-T,$(location //guest:unixhv/link.ld)",
                "-o $@",
                "$(locations //guest:unixhv_sources)",
            ] + ["$(locations %s)" % s for s in srcs],
        ),
        toolchains = ["@bazel_tools//tools/cpp:current_cc_toolchain"],
        visibility = visibility,
    )
