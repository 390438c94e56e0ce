#include "vmms/kernel_image.h"

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "kernel_probe/kernel_image.h"
#include "vmms/validation.h"

namespace vmms {

absl::Status ValidateKernelImage(const std::string& path, uint64_t memory_mib) {
  // The loader's messages already start with "kernel <path>: "; say which field
  // it was.
  auto invalid = [&path](const absl::Status& s) {
    // The loader's message quotes the path in full; a long one is cut.
    return absl::InvalidArgumentError(
        absl::StrCat("config.kernel_path: ",
                     absl::StrReplaceAll(s.message(), {{path, Quoted(path)}})));
  };
  absl::StatusOr<kernel_probe::KernelImageInfo> image =
      kernel_probe::ProbeKernelImage(path);
  if (!image.ok()) return invalid(image.status());
  if (absl::Status s =
          kernel_probe::CheckKernelFitsMemory(path, *image, memory_mib << 20);
      !s.ok()) {
    return invalid(s);
  }
  return absl::OkStatus();
}

}  // namespace vmms
