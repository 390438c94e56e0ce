#include "vmms/kernel_image.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/scoped_fd.h"

namespace vmms {

absl::Status ValidateKernelImage(const std::string& path) {
  auto invalid = [&path](absl::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.kernel_path '", path, "': ", problem));
  };
  base::ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return invalid(std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return invalid(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return invalid("not a regular file");
  Elf64_Ehdr header;
  ssize_t n = ::pread(fd.get(), &header, sizeof(header), 0);
  if (n < 0) return invalid(std::strerror(errno));
  if (static_cast<size_t>(n) < EI_NIDENT ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    return invalid("not an ELF file (expected an ELF64 x86-64 executable)");
  }
  if (static_cast<size_t>(n) < sizeof(header) || header.e_ident[EI_CLASS] != ELFCLASS64) {
    return invalid("not a 64-bit ELF file (expected an ELF64 x86-64 executable)");
  }
  if (header.e_ident[EI_DATA] != ELFDATA2LSB) {
    return invalid("not a little-endian ELF file (expected an ELF64 x86-64 executable)");
  }
  if (header.e_machine != EM_X86_64) {
    return invalid(absl::StrCat("ELF machine is ", header.e_machine,
                                ", not x86-64 (expected an ELF64 x86-64 executable)"));
  }
  if (header.e_type != ET_EXEC) {
    return invalid("ELF type is not an executable (ET_EXEC); a kernel image is expected");
  }
  return absl::OkStatus();
}

}  // namespace vmms
