#include "vmms/kernel_image.h"

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "vmms/validation.h"
#include "vmwp/loader/kernel_image.h"

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
  absl::StatusOr<vmwp::KernelImageInfo> image = vmwp::ProbeKernelImage(path);
  if (!image.ok()) return invalid(image.status());
  if (absl::Status s =
          vmwp::CheckKernelFitsMemory(path, *image, memory_mib << 20);
      !s.ok()) {
    return invalid(s);
  }
  return absl::OkStatus();
}

}  // namespace vmms
