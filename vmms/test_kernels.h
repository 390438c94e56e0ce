#ifndef HVSTACK_VMMS_TEST_KERNELS_H_
#define HVSTACK_VMMS_TEST_KERNELS_H_

#include <elf.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace vmms::testing {

// //guest:hello, a real loadable kernel image (a data dependency of the tests).
inline std::string HelloKernel() {
  return std::filesystem::absolute("guest/hello.elf").string();
}

inline std::string WriteFile(const std::string& path,
                             const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

// A well-formed ELF64 header for another machine (AArch64).
inline std::string Aarch64ElfHeader() {
  Elf64_Ehdr header;
  std::memset(&header, 0, sizeof(header));
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_ident[EI_VERSION] = EV_CURRENT;
  header.e_type = ET_EXEC;
  header.e_machine = EM_AARCH64;
  header.e_version = EV_CURRENT;
  header.e_ehsize = sizeof(header);
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header));
}

}  // namespace vmms::testing

#endif  // HVSTACK_VMMS_TEST_KERNELS_H_
