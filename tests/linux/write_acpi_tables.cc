// Writes the worker's ACPI tables (vmwp/acpi) to a file, built for a given
// guest-physical base, so that another VMM can load them into a guest:
// qemu_acpi_boot_test.sh boots Debian's kernel under QEMU with them (via
// acpi_rsdp=) to check a real Linux accepts them.
//
// Usage: write_acpi_tables OUT_FILE BASE_GPA VCPUS [vmbus]
// Prints the RSDP's GPA (hex) on stdout.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "vmwp/acpi/acpi_tables.h"

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5 || (argc == 5 && std::string(argv[4]) != "vmbus")) {
    std::cerr << "usage: " << argv[0] << " OUT_FILE BASE_GPA VCPUS [vmbus]\n";
    return 2;
  }
  vmwp::acpi::AcpiConfig config;
  config.vcpu_count = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 0));
  if (argc == 5) config.vmbus = vmwp::acpi::VmbusAcpiDevice{};
  const uint64_t base = std::strtoull(argv[2], nullptr, 0);
  absl::StatusOr<vmwp::acpi::AcpiTables> tables =
      vmwp::acpi::BuildAcpiTables(config, base);
  if (!tables.ok()) {
    std::cerr << "write_acpi_tables: " << tables.status() << "\n";
    return 1;
  }
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(tables->bytes.data()),
            static_cast<std::streamsize>(tables->bytes.size()));
  if (!out.good()) {
    std::cerr << "write_acpi_tables: cannot write " << argv[1] << "\n";
    return 1;
  }
  std::printf("0x%llx\n", static_cast<unsigned long long>(tables->rsdp_gpa()));
  return 0;
}
